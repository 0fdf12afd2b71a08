{{ config(meta={'dagster': {'ref': {'name': 'approval_funnel'}}}) }}

-- Every scored application is counted once in the approval funnel, on its own day.
with

funnel as (

    select application_date, applications from {{ ref('approval_funnel') }}

),

scored as (

    select application_date, count(*) as applications
    from {{ ref('stg_scored_applications') }}
    group by application_date

)

select
    coalesce(funnel.application_date, scored.application_date) as application_date,
    funnel.applications as funnel_applications,
    scored.applications as scored_applications

from funnel
full outer join scored on funnel.application_date = scored.application_date
where funnel.applications is distinct from scored.applications
