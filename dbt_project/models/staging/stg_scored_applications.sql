with

source as (

    select * from {{ source('warehouse', 'scored_applications') }}

),

renamed as (

    select
        ---------- ids
        application_id,

        ---------- the model's view
        pd,
        score_band,
        model_version,
        decision_source,
        confidence,
        reason_codes,

        ---------- the policy's routing
        action,
        policy_rule,
        policy_hard_rule,
        requires_four_eyes,
        review_priority,
        review_due_hours,
        policy_version,
        policy_fingerprint,
        automation_paused,

        ---------- timestamps
        application_date

    from source

)

select * from renamed
