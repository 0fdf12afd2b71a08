with

source as (

    select * from {{ source('warehouse', 'human_decisions') }}

),

renamed as (

    select
        ---------- ids
        decision_id,
        case_id,
        application_id,

        ---------- who
        reviewer,
        reviewer_role,

        ---------- what
        decision,
        decision in ('approve', 'decline') as is_verdict,
        reason_codes,
        note,
        stage,
        model_recommendation,
        is_override,
        override_direction,
        blind_review,

        ---------- timestamps
        claimed_at,
        decided_at,
        case_created_at,

        ---------- copy bookkeeping
        copied_cursor

    from source

)

select * from renamed
