with

scored as (

    select * from {{ ref('stg_scored_applications') }}

),

applications as (

    select * from {{ ref('stg_applications') }}

),

review_cases as (

    select * from {{ ref('int_review_cases') }}

),

outcomes as (

    select * from {{ ref('stg_loan_outcomes') }}

),

-- the review store keeps one case per application; should a copy ever hold two, the
-- newest speaks for the application
latest_case as (

    {{ first_row_per('review_cases', 'application_id', 'created_at desc nulls last, case_id desc nulls last') }}

),

joined as (

    select
        scored.application_id,
        scored.application_date,
        scored.origin,
        applications.application_ts,
        applications.loan_amount,
        applications.channel,

        ---------- the model
        scored.pd,
        scored.score_band,
        scored.model_version,
        coalesce(scored.model_version, 'fallback_rules') as model_version_label,
        scored.decision_source,

        ---------- the policy
        scored.policy_version,
        scored.policy_rule,
        scored.action as routed_action,
        scored.automation_paused,
        case scored.action
            when 'auto_approve' then 'approve'
            when 'auto_decline' then 'decline'
            else latest_case.model_recommendation
        end as model_recommendation,

        ---------- the review
        latest_case.case_id,
        latest_case.queue,
        latest_case.expert_queue,
        latest_case.priority as review_priority,
        latest_case.blind_review,
        coalesce(latest_case.requires_four_eyes, scored.requires_four_eyes) as requires_four_eyes,
        latest_case.status as case_status,
        latest_case.four_eyes_outcome as case_four_eyes_outcome,
        latest_case.first_reviewer,
        latest_case.first_review_verdict,
        latest_case.second_reviewer,
        latest_case.second_review_verdict,
        coalesce(latest_case.human_verdicts, 0) as human_verdicts,
        coalesce(latest_case.info_requests, 0) as info_requests,
        coalesce(latest_case.distinct_reviewers, 0) as distinct_reviewers,
        latest_case.closing_reviewer,
        latest_case.closing_reviewer_role,
        latest_case.created_at as case_created_at,
        latest_case.first_claimed_at,
        latest_case.due_at as case_due_at,
        latest_case.hours_to_first_claim,
        latest_case.hours_to_decision,
        latest_case.sla_status,

        ---------- the decision
        case scored.action
            when 'auto_approve' then 'approve'
            when 'auto_decline' then 'decline'
            else latest_case.final_decision
        end as final_decision,
        case when scored.action = 'review' then latest_case.decided_at end as decided_at,

        ---------- the outcome
        outcomes.defaulted,
        outcomes.outcome_date

    from scored
    left join applications on scored.application_id = applications.application_id
    left join latest_case on scored.application_id = latest_case.application_id
    left join outcomes on scored.application_id = outcomes.application_id

),

decided as (

    select
        *,
        case when final_decision is null then 'pending' else 'decided' end as decision_status,
        case
            when routed_action <> 'review' then 'automation'
            when final_decision is not null then 'human'
        end as decided_by_type

    from joined

),

final as (

    select
        application_id,
        application_date,
        origin,
        application_ts,
        loan_amount,
        channel,
        pd,
        score_band,
        model_version,
        model_version_label,
        decision_source,
        policy_version,
        policy_rule,
        routed_action,
        automation_paused,
        model_recommendation,
        case_id,
        queue,
        expert_queue,
        review_priority,
        blind_review,
        requires_four_eyes,
        case_status,
        final_decision,
        decision_status,
        decided_by_type,
        case decided_by_type
            when 'automation' then 'automation'
            when 'human' then coalesce(closing_reviewer, 'unknown_reviewer')
        end as decided_by,
        case when decided_by_type = 'human' then closing_reviewer_role end as decided_by_role,
        -- a person overrides the model by deciding against its recommendation; automation
        -- never does, and a case without a recommendation has nothing to override
        case
            when decided_by_type = 'automation' then false
            when decided_by_type = 'human' then coalesce(final_decision <> model_recommendation, false)
        end as is_override,
        case
            when decided_by_type = 'human' and final_decision = 'approve' and model_recommendation = 'decline' then 'low_side'
            when decided_by_type = 'human' and final_decision = 'decline' and model_recommendation = 'approve' then 'high_side'
        end as override_direction,
        case
            when routed_action <> 'review' or not coalesce(requires_four_eyes, false) then 'not_required'
            else coalesce(case_four_eyes_outcome, 'awaiting_first')
        end as four_eyes_outcome,
        first_reviewer,
        first_review_verdict,
        second_reviewer,
        second_review_verdict,
        human_verdicts,
        info_requests,
        distinct_reviewers,
        case_created_at,
        first_claimed_at,
        decided_at,
        case_due_at,
        hours_to_first_claim,
        hours_to_decision,
        sla_status,
        defaulted is not null as has_matured_outcome,
        defaulted,
        outcome_date

    from decided

)

select * from final
