with

source as (

    select * from {{ source('warehouse', 'review_events') }}

),

renamed as (

    select
        ---------- ids
        event_id,
        case_id,

        ---------- what happened
        event_type,
        actor,
        details,

        ---------- timestamps
        "at" as event_at

    from source

)

select * from renamed
