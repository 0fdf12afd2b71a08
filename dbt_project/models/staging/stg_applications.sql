-- Every application the platform decided on: those loaded from the landing files
-- (raw_applications) and those sent to the review service online (online_applications, the
-- same contract columns). An application in both is kept once, the landing file's row (the
-- same rule as stg_scored_applications); among online rows, the first.
{%- set renamed_columns %}
        ---------- ids
        {{ contract_column('application_id_column', 'varchar') }} as application_id,

        ---------- attributes the marts slice by
        {{ contract_column('loan_amount_column', 'double precision') }} as loan_amount,
        {{ contract_column('channel_column', 'varchar') }} as channel,

        ---------- timestamps
        {{ contract_column('application_ts_column', 'timestamp') }} as application_ts,
        landing_date as application_date,

        ---------- lineage
        source_file,
        source_row
{%- endset %}

with

batch as (

    select * from {{ source('warehouse', 'raw_applications') }}

),

online as (

    select * from {{ source('warehouse', 'online_applications') }}

),

unioned as (

    select
        {{ renamed_columns }},
        'batch' as origin,
        1 as origin_rank

    from batch

    union all

    select
        {{ renamed_columns }},
        'online' as origin,
        2 as origin_rank

    from online

),

deduplicated as (

    {{ first_row_per('unioned', 'application_id', 'origin_rank, source_row nulls last, source_file nulls last') }}

),

renamed as (

    select
        application_id,
        loan_amount,
        channel,
        application_ts,
        application_date,
        source_file,
        source_row,
        origin

    from deduplicated

)

select * from renamed
