with

source as (

    select * from {{ source('warehouse', 'review_cases') }}

),

renamed as (

    select
        ---------- ids
        case_id,
        application_id,

        ---------- routing
        source as case_source,
        queue,
        {{ column_or_null(source('warehouse', 'review_cases'), 'expert_queue', 'varchar') }} as expert_queue,
        priority,
        requires_four_eyes,
        blind_review,

        ---------- what the reviewer was (or was not) shown
        model_recommendation,
        pd,
        score_band,
        model_version,
        policy_version,
        policy_rule,

        ---------- state
        status,
        final_decision,

        ---------- timestamps
        application_date,
        created_at,
        due_at,
        decided_at

    from source

)

select * from renamed
