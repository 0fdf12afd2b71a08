{#- A column of a relation, or a null of the type when the relation does not have it (yet): a
    warehouse copied by an older release of the review plane lacks the columns added since,
    until the next copy rewrites the table. -#}
{% macro column_or_null(relation, column, data_type) -%}
    {%- if execute -%}
        {%- set names = adapter.get_columns_in_relation(relation) | map(attribute='name') | map('lower') | list -%}
        {%- if column | lower in names -%}
            cast({{ adapter.quote(column) }} as {{ data_type }})
        {%- else -%}
            cast(null as {{ data_type }})
        {%- endif -%}
    {%- else -%}
        cast({{ adapter.quote(column) }} as {{ data_type }})
    {%- endif -%}
{%- endmacro %}
