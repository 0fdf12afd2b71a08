with

reviewed as (

    select * from {{ ref('fct_application_decisions') }}
    where decided_by_type = 'human'
        and model_recommendation is not null

),

classified as (

    select
        *,
        case
            when override_direction = 'low_side' then 'low_side_override'
            when override_direction = 'high_side' then 'high_side_override'
            when final_decision = 'approve' then 'agreed_approve'
            else 'agreed_decline'
        end as review_outcome

    from reviewed

),

grouped as (

    select
        model_version_label as model_version,
        coalesce(score_band, 'no_score') as score_band,
        review_outcome,
        -- one value per review outcome (it fixes both), so any row's will do
        {{ dbt.any_value('model_recommendation') }} as model_recommendation,
        {{ dbt.any_value('final_decision') }} as final_decision,
        {{ dbt.bool_or('is_override') }} as is_override,

        count(*) as cases,
        count(*) filter (where has_matured_outcome) as matured_outcomes,
        sum(defaulted) as defaults,
        avg(pd) as mean_pd,
        avg(pd) filter (where has_matured_outcome) as mean_pd_matured

    from classified
    group by 1, 2, 3

),

rates as (

    select
        *,
        {{ safe_ratio('defaults', 'matured_outcomes') }} as default_rate,
        {{ safe_ratio('defaults', 'matured_outcomes') }} - mean_pd_matured as default_rate_minus_pd,
        {{ safe_ratio('matured_outcomes', 'cases') }} as matured_share

    from grouped

)

select * from rates
