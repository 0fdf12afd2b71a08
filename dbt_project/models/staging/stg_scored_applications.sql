-- Every decision the platform made: the batch scoring (scored_applications) and the review
-- service's online decisions (online_decisions, POST /api/decisions), in one table with the
-- same columns. An application in both is kept once, as the batch scored it: the batch is
-- the lender's record (its landing files), and it is the row the batch review cases and
-- outcomes were published from. Among online rows (the review store decides an application
-- online once) the first decision wins, so a rebuild always picks the same row.
with

batch as (

    select * from {{ source('warehouse', 'scored_applications') }}

),

online as (

    select * from {{ source('warehouse', 'online_decisions') }}

),

unioned as (

    select
        application_id,
        pd,
        score_band,
        model_version,
        decision_source,
        confidence,
        reason_codes,
        action,
        policy_rule,
        policy_hard_rule,
        requires_four_eyes,
        review_priority,
        review_due_hours,
        policy_version,
        policy_fingerprint,
        automation_paused,
        application_date,
        'batch' as origin,
        cast(null as varchar) as online_decision_id,
        cast(null as timestamp) as decided_online_at,
        1 as origin_rank,
        cast(null as bigint) as origin_order

    from batch

    union all

    select
        application_id,
        pd,
        score_band,
        model_version,
        decision_source,
        confidence,
        reason_codes,
        action,
        policy_rule,
        policy_hard_rule,
        requires_four_eyes,
        review_priority,
        review_due_hours,
        policy_version,
        policy_fingerprint,
        automation_paused,
        application_date,
        'online' as origin,
        decision_id as online_decision_id,
        decided_at as decided_online_at,
        2 as origin_rank,
        copied_cursor as origin_order

    from online

),

deduplicated as (

    {{ first_row_per('unioned', 'application_id', 'origin_rank, origin_order nulls first, online_decision_id nulls last') }}

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

        ---------- where the decision was made
        origin,
        online_decision_id,

        ---------- timestamps
        application_date,
        decided_online_at

    from deduplicated

)

select * from renamed
