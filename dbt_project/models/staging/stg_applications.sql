with

source as (

    select * from {{ source('warehouse', 'raw_applications') }}

),

renamed as (

    select
        ---------- ids
        {{ contract_column('application_id_column', 'varchar') }} as application_id,

        ---------- attributes the marts slice by
        {{ contract_column('loan_amount_column', 'double') }} as loan_amount,
        {{ contract_column('channel_column', 'varchar') }} as channel,

        ---------- timestamps
        {{ contract_column('application_ts_column', 'timestamp') }} as application_ts,
        landing_date as application_date,

        ---------- lineage
        source_file,
        source_row

    from source

)

select * from renamed
