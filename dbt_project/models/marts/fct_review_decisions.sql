with

decisions as (

    select * from {{ ref('stg_human_decisions') }}

),

cases as (

    select * from {{ ref('stg_review_cases') }}

),

applications as (

    select * from {{ ref('stg_applications') }}

),

outcomes as (

    select * from {{ ref('stg_loan_outcomes') }}

),

joined as (

    select
        decisions.decision_id,
        decisions.case_id,
        decisions.application_id,
        cases.case_source,

        ---------- the reviewer and the verdict
        decisions.reviewer,
        decisions.reviewer_role,
        decisions.decision,
        decisions.is_verdict,
        decisions.stage,
        decisions.model_recommendation,
        decisions.is_override,
        decisions.override_direction,
        decisions.blind_review,
        -- agreement is measured only where the model recommended something
        case
            when decisions.is_verdict and decisions.model_recommendation is not null
                then decisions.decision = decisions.model_recommendation
        end as agrees_with_model,

        ---------- what the case showed the reviewer
        cases.score_band,
        coalesce(cases.model_version, case when cases.pd is null then 'no_model' else 'fallback_rules' end)
            as model_version_label,
        cases.policy_rule,
        cases.policy_version,
        cases.pd,
        cases.queue,
        cases.expert_queue,
        cases.final_decision as case_final_decision,
        applications.channel,
        outcomes.defaulted,

        ---------- timestamps
        decisions.claimed_at,
        decisions.decided_at,
        cast(decisions.decided_at as date) as decision_date,
        {{ hours_between('decisions.case_created_at', 'decisions.decided_at') }} as hours_since_case_created

    from decisions
    left join cases on decisions.case_id = cases.case_id
    left join applications on decisions.application_id = applications.application_id
    left join outcomes on decisions.application_id = outcomes.application_id

)

select * from joined
