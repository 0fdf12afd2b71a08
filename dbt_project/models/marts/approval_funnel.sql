with

applications as (

    select * from {{ ref('fct_application_decisions') }}

),

per_day as (

    select
        application_date,

        count(*) as applications,
        count(*) filter (where origin = 'online') as online_applications,
        count(*) filter (where routed_action = 'auto_approve') as auto_approved,
        count(*) filter (where routed_action = 'auto_decline') as auto_declined,
        count(*) filter (where routed_action = 'review') as referred_to_review,
        count(*) filter (where decided_by_type = 'human') as reviewed,
        count(*) filter (where decided_by_type = 'human' and final_decision = 'approve') as review_approved,
        count(*) filter (where decided_by_type = 'human' and final_decision = 'decline') as review_declined,
        count(*) filter (where decision_status = 'pending') as pending,
        count(*) filter (where final_decision = 'approve') as approved,
        count(*) filter (where final_decision = 'decline') as declined

    from applications
    group by application_date

),

rates as (

    select
        *,
        {{ safe_ratio('auto_approved + auto_declined', 'applications') }} as automation_rate,
        {{ safe_ratio('approved', 'approved + declined') }} as approval_rate

    from per_day

)

select * from rates
