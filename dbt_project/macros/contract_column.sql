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
