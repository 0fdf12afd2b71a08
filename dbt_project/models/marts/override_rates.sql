with

verdicts as (

    select * from {{ ref('fct_review_decisions') }}
    where is_verdict
        and model_recommendation is not null

),

counted as (

    select
        decision_date,
        model_version_label as model_version,
        coalesce(score_band, 'no_score') as score_band,
        policy_rule,
        reviewer,

        count(*) as verdicts,
        count(*) filter (where is_override) as overrides,
        count(*) filter (where override_direction = 'low_side') as low_side_overrides,
        count(*) filter (where override_direction = 'high_side') as high_side_overrides,

        count(*) filter (where blind_review) as blind_verdicts,
        count(*) filter (where blind_review and agrees_with_model) as blind_agreements,
        count(*) filter (where not blind_review) as shown_verdicts,
        count(*) filter (where not blind_review and agrees_with_model) as shown_agreements

    from verdicts
    group by 1, 2, 3, 4, 5

),

rates as (

    select
        *,
        {{ safe_ratio('overrides', 'verdicts') }} as override_rate,
        {{ safe_ratio('low_side_overrides', 'verdicts') }} as low_side_override_rate,
        {{ safe_ratio('high_side_overrides', 'verdicts') }} as high_side_override_rate,
        {{ safe_ratio('blind_agreements', 'blind_verdicts') }} as blind_agreement_rate,
        {{ safe_ratio('shown_agreements', 'shown_verdicts') }} as shown_agreement_rate

    from counted

)

select * from rates
