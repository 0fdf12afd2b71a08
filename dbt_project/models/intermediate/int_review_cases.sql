with

cases as (

    select * from {{ ref('stg_review_cases') }}

),

decisions as (

    select * from {{ ref('stg_human_decisions') }}

),

events as (

    select * from {{ ref('stg_review_events') }}

),

verdicts as (

    select * from decisions
    where is_verdict

),

-- the approve / decline that closed the case: the last verdict made on it
last_verdict as (

    {{ first_row_per('verdicts', 'case_id', 'copied_cursor desc nulls last') }}

),

closing_verdict as (

    select
        case_id,
        reviewer as closing_reviewer,
        reviewer_role as closing_reviewer_role,
        decided_at as closing_verdict_at

    from last_verdict

),

review_work as (

    select
        case_id,
        count(*) filter (where is_verdict) as human_verdicts,
        count(*) filter (where decision = 'request_info') as info_requests,
        count(distinct reviewer) filter (where is_verdict) as distinct_reviewers,
        {{ arg_min('decision', 'copied_cursor', "is_verdict and stage = 'first'") }} as first_review_verdict,
        {{ arg_min('reviewer', 'copied_cursor', "is_verdict and stage = 'first'") }} as first_reviewer,
        {{ arg_min('decision', 'copied_cursor', "is_verdict and stage = 'second'") }} as second_review_verdict,
        {{ arg_min('reviewer', 'copied_cursor', "is_verdict and stage = 'second'") }} as second_reviewer,
        min(claimed_at) as first_decision_claimed_at

    from decisions
    group by case_id

),

first_claims as (

    select
        case_id,
        min(event_at) as first_claimed_at

    from events
    where event_type = 'claimed'
    group by case_id

),

-- the newest moment the warehouse knows of in the review plane: the "now" of open cases,
-- so a rebuild on the same data gives the same answer
review_clock as (

    select max(ts) as review_as_of
    from (
        select max(created_at) as ts from cases
        union all
        select max(decided_at) from cases
        union all
        select max(decided_at) from decisions
        union all
        select max(event_at) from events
    ) as review_times

),

joined as (

    select
        cases.case_id,
        cases.application_id,
        cases.case_source,
        cases.queue,
        cases.expert_queue,
        cases.priority,
        cases.blind_review,
        cases.requires_four_eyes,
        cases.model_recommendation,
        cases.pd,
        cases.score_band,
        cases.model_version,
        cases.policy_version,
        cases.policy_rule,
        cases.status,
        cases.final_decision,
        cases.created_at,
        cases.due_at,
        case
            when cases.final_decision is not null then coalesce(cases.decided_at, closing_verdict.closing_verdict_at)
        end as decided_at,
        case when cases.final_decision is not null then closing_verdict.closing_reviewer end as closing_reviewer,
        case when cases.final_decision is not null then closing_verdict.closing_reviewer_role end as closing_reviewer_role,
        coalesce(first_claims.first_claimed_at, review_work.first_decision_claimed_at) as first_claimed_at,
        coalesce(review_work.human_verdicts, 0) as human_verdicts,
        coalesce(review_work.info_requests, 0) as info_requests,
        coalesce(review_work.distinct_reviewers, 0) as distinct_reviewers,
        review_work.first_review_verdict,
        review_work.first_reviewer,
        review_work.second_review_verdict,
        review_work.second_reviewer,
        review_clock.review_as_of

    from cases
    left join closing_verdict on cases.case_id = closing_verdict.case_id
    left join review_work on cases.case_id = review_work.case_id
    left join first_claims on cases.case_id = first_claims.case_id
    cross join review_clock

),

final as (

    select
        *,
        {{ hours_between('created_at', 'decided_at') }} as hours_to_decision,
        {{ hours_between('created_at', 'first_claimed_at') }} as hours_to_first_claim,
        case
            when due_at is null then null
            when decided_at is not null then
                case when decided_at > due_at then 'breached' else 'met' end
            when review_as_of > due_at then 'overdue'
            else 'open'
        end as sla_status,
        case
            when not coalesce(requires_four_eyes, false) then 'not_required'
            when first_review_verdict is null then 'awaiting_first'
            when second_review_verdict is null then 'awaiting_second'
            when first_review_verdict = second_review_verdict then 'agreed'
            else 'disagreed'
        end as four_eyes_outcome

    from joined

)

select * from final
