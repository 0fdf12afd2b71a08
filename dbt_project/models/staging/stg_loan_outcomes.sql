with

source as (

    select * from {{ source('warehouse', 'raw_loan_outcomes') }}

),

renamed as (

    select
        ---------- ids
        {{ contract_column('outcome_application_id_column', 'varchar') }} as application_id,

        ---------- outcome
        {{ contract_column('outcome_target_column', 'integer') }} as defaulted,

        ---------- timestamps
        {{ contract_column('outcome_date_column', 'date') }} as outcome_date,
        landing_date

    from source

)

select * from renamed
