with

approved as (

    select * from {{ ref('fct_application_decisions') }}
    where final_decision = 'approve'

),

per_vintage_and_band as (

    select
        cast({{ dbt.date_trunc('month', 'cast(application_date as timestamp)') }} as date) as vintage,
        coalesce(score_band, 'no_score') as score_band,

        count(*) as approved_loans,
        count(*) filter (where decided_by_type = 'automation') as approved_by_automation,
        count(*) filter (where decided_by_type = 'human') as approved_by_people,
        sum(loan_amount) as approved_amount,
        count(*) filter (where has_matured_outcome) as matured_loans,
        sum(defaulted) as defaults,
        avg(pd) as mean_pd,
        avg(pd) filter (where has_matured_outcome) as mean_pd_matured

    from approved
    group by 1, 2

),

rates as (

    select
        *,
        {{ safe_ratio('defaults', 'matured_loans') }} as default_rate,
        {{ safe_ratio('matured_loans', 'approved_loans') }} as matured_share

    from per_vintage_and_band

)

select * from rates
