{#- SQL that DuckDB and PostgreSQL spell differently. The models run unchanged on both
    (dbt-duckdb for the embedded warehouse file, dbt-postgres for a warehouse server): each
    macro here dispatches on the adapter (adapter.dispatch: duckdb__ / postgres__ / default__),
    and keeps DuckDB's own, fastest, form on DuckDB. dbt's cross-database macros (dbt.datediff,
    dbt.any_value, dbt.date_trunc) cover the rest. -#}

{#- The first row of `relation` (a CTE or a table) in each `partition_by` group, in the order
    `order_by`: the whole select statement. Say `nulls first`/`nulls last` where a sort column
    can be null: DuckDB sorts nulls last both ways, PostgreSQL first when descending. -#}
{% macro first_row_per(relation, partition_by, order_by) -%}
    {{ return(adapter.dispatch('first_row_per')(relation, partition_by, order_by)) }}
{%- endmacro %}

{% macro default__first_row_per(relation, partition_by, order_by) -%}
    select *
    from {{ relation }}
    qualify row_number() over (partition by {{ partition_by }} order by {{ order_by }}) = 1
{%- endmacro %}

{#- PostgreSQL has no qualify: distinct on keeps the first row of each group in the order given. -#}
{% macro postgres__first_row_per(relation, partition_by, order_by) -%}
    select distinct on ({{ partition_by }}) *
    from {{ relation }}
    order by {{ partition_by }}, {{ order_by }}
{%- endmacro %}

{#- The value of `value` on the row with the smallest `key` among the rows where `condition`
    holds (an aggregate). Rows whose value or key is null are skipped, as DuckDB's arg_min does. -#}
{% macro arg_min(value, key, condition='true') -%}
    {{ return(adapter.dispatch('arg_min')(value, key, condition)) }}
{%- endmacro %}

{% macro default__arg_min(value, key, condition='true') -%}
    arg_min({{ value }}, {{ key }}) filter (where {{ condition }})
{%- endmacro %}

{#- PostgreSQL 15 has no arg_min: the first of the values ordered by the key. -#}
{% macro postgres__arg_min(value, key, condition='true') -%}
    (array_agg({{ value }} order by {{ key }})
        filter (where ({{ condition }}) and {{ value }} is not null and {{ key }} is not null))[1]
{%- endmacro %}

{#- The continuous (interpolated) quantile `fraction` of `expression` (an aggregate); nulls
    are ignored. -#}
{% macro percentile_cont(expression, fraction) -%}
    {{ return(adapter.dispatch('percentile_cont')(expression, fraction)) }}
{%- endmacro %}

{% macro default__percentile_cont(expression, fraction) -%}
    percentile_cont({{ fraction }}) within group (order by {{ expression }})
{%- endmacro %}

{% macro duckdb__percentile_cont(expression, fraction) -%}
    quantile_cont({{ expression }}, {{ fraction }})
{%- endmacro %}

{#- Hours between two timestamps, as a double: whole seconds crossed / 3600 (DuckDB's
    date_diff('second', ...), which dbt.datediff reproduces on PostgreSQL). -#}
{% macro hours_between(start_ts, end_ts) -%}
    ({{ dbt.datediff(start_ts, end_ts, 'second') }} / 3600.0)
{%- endmacro %}

{#- numerator / denominator as a double, null when the denominator is zero or null. -#}
{% macro safe_ratio(numerator, denominator) -%}
    cast(({{ numerator }}) as double precision) / nullif(({{ denominator }}), 0)
{%- endmacro %}
