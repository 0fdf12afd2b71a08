{#- A share or probability: between 0 and 1 inclusive. Nulls pass (a rate over no rows is null). -#}
{% test rate_between_0_and_1(model, column_name) %}

select {{ column_name }} as failing_rate
from {{ model }}
where {{ column_name }} < 0 or {{ column_name }} > 1

{% endtest %}
