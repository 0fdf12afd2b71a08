{#- A column of a landing table named by the data contract (see the vars in dbt_project.yml),
    cast to a type; null of that type when the contract has no such column. -#}
{% macro contract_column(var_name, data_type) -%}
    {%- set column = var(var_name, none) -%}
    {%- if column -%}
        cast({{ adapter.quote(column) }} as {{ data_type }})
    {%- else -%}
        cast(null as {{ data_type }})
    {%- endif -%}
{%- endmacro %}

{#- Hours between two timestamps, as a decimal. -#}
{% macro hours_between(start_ts, end_ts) -%}
    (date_diff('second', {{ start_ts }}, {{ end_ts }}) / 3600.0)
{%- endmacro %}

{#- numerator / denominator, null when the denominator is zero or null. -#}
{% macro safe_ratio(numerator, denominator) -%}
    cast(({{ numerator }}) as double) / nullif(({{ denominator }}), 0)
{%- endmacro %}
