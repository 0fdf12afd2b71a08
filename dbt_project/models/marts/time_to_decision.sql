with

decided_cases as (

    select * from {{ ref('int_review_cases') }}
    where final_decision is not null

),

per_day_and_queue as (

    select
        cast(decided_at as date) as decision_date,
        -- the policy's expert queue (general, large_loans, ...), not the stage lane
        coalesce(expert_queue, 'not_recorded') as expert_queue,

        count(*) as decided_cases,
        {{ percentile_cont('hours_to_decision', 0.5) }} as p50_hours,
        {{ percentile_cont('hours_to_decision', 0.9) }} as p90_hours,
        {{ percentile_cont('hours_to_decision', 0.99) }} as p99_hours,
        avg(hours_to_decision) as mean_hours,
        max(hours_to_decision) as max_hours,
        {{ percentile_cont('hours_to_first_claim', 0.5) }} as p50_hours_to_first_claim,
        count(*) filter (where sla_status = 'breached') as sla_breaches,
        count(*) filter (where requires_four_eyes) as four_eyes_cases,
        count(*) filter (where info_requests > 0) as cases_with_info_requests

    from decided_cases
    group by 1, 2

),

rates as (

    select
        *,
        {{ safe_ratio('sla_breaches', 'decided_cases') }} as sla_breach_rate

    from per_day_and_queue

)

select * from rates
