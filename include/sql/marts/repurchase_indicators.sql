{{ config(unique_key='indicator') }}

-- One row per indicator: repeat buyers against one-time buyers, each measured up to and including their
-- first order (int_user_behavior's through_first_order scope), so nothing of a second order leaks in.
-- A buyer without a value for an indicator (e.g. no add-to-cart before the checkout) is left out of it.
-- The test is Mann-Whitney U with the normal approximation: average ranks for ties, the tie-corrected
-- variance and a continuity correction of 1/2 (what scipy.stats.mannwhitneyu does with method='asymptotic').
-- The approximation is poor for small groups: below 10 buyers with a value in either group, or when every
-- value is tied (no variance), there is no z and no p-value, and untested_reason says why.
with

behavior as (
    select * from {{ ref('int_user_behavior') }}
    where behavior_scope = 'through_first_order'
),

observations as (
    select
        behavior.user_id,
        behavior.is_repeat_buyer,
        measures.indicator,
        measures.is_binary,
        measures.value
    from behavior
    cross join lateral (
        values
        ('sessions', false, behavior.sessions::numeric),
        ('page_views', false, behavior.page_views::numeric),
        ('products_viewed', false, behavior.products_viewed::numeric),
        ('add_to_carts', false, behavior.add_to_carts::numeric),
        ('carts_abandoned', false, behavior.carts_abandoned::numeric),
        ('avg_session_minutes', false, behavior.avg_session_minutes),
        ('total_session_minutes', false, behavior.total_session_minutes),
        ('minutes_cart_to_checkout', false, behavior.median_minutes_cart_to_checkout),
        ('first_order_total', false, behavior.avg_order_total),
        ('first_order_units', false, behavior.avg_order_units),
        ('first_order_products', false, behavior.avg_order_products),
        ('first_order_used_promo', true, behavior.promo_order_share),
        (
            'first_order_delivered_late',
            true,
            behavior.late_deliveries::numeric / nullif(behavior.deliveries_known, 0)
        ),
        ('bought_repeat_favoured_product', true, behavior.bought_repeat_favoured_product::int::numeric),
        ('days_signup_to_first_order', false, behavior.days_signup_to_first_order)
    ) as measures (indicator, is_binary, value)
),

tie_groups as (
    -- Each distinct value of an indicator once, with how many buyers have it (and how many of them repeat).
    select
        indicator,
        value,
        count(*) as tied,
        count(*) filter (where is_repeat_buyer) as repeat_tied
    from observations
    where value is not null
    group by indicator, value
),

ranked as (
    -- Tied values share the mean of the ranks they span: after every smaller value, ranks 1 to tied.
    -- Ranked per distinct value, not per buyer: one sort of the distinct values instead of every observation.
    select
        indicator,
        repeat_tied,
        coalesce(sum(tied) over (partition by indicator order by value rows unbounded preceding) - tied, 0)
        + 1 + (tied - 1) / 2.0 as value_rank
    from tie_groups
),

ties as (
    select
        indicator,
        sum(tied ^ 3 - tied) as tie_term
    from tie_groups
    group by indicator
),

rank_sums as (
    select
        indicator,
        -- Filtered as a sum over repeat buyers' ranks would be: without one, no sum (0, not 0.0...0).
        coalesce(sum(value_rank * repeat_tied) filter (where repeat_tied > 0), 0) as repeat_rank_sum
    from ranked
    group by indicator
),

groups as (
    select
        indicator,
        bool_and(is_binary) as is_binary,
        count(value) filter (where is_repeat_buyer) as n_repeat,
        count(value) filter (where not is_repeat_buyer) as n_one_time,
        avg(value) filter (where is_repeat_buyer) as mean_repeat,
        avg(value) filter (where not is_repeat_buyer) as mean_one_time,
        percentile_cont(0.5) within group (order by value::double precision) filter (
            where is_repeat_buyer
        ) as median_repeat,
        percentile_cont(0.5) within group (order by value::double precision) filter (
            where not is_repeat_buyer
        ) as median_one_time,
        var_samp(value) filter (where is_repeat_buyer) as variance_repeat,
        var_samp(value) filter (where not is_repeat_buyer) as variance_one_time
    from observations
    group by indicator
),

u_statistics as (
    select
        groups.*,
        rank_sums.repeat_rank_sum - groups.n_repeat * (groups.n_repeat + 1) / 2.0 as mann_whitney_u,
        groups.n_repeat * groups.n_one_time / 2.0 as u_mean,
        -- Var(U) = n1 n0 / 12 * ((N + 1) - sum(t^3 - t) / (N (N - 1))), t the size of each group of ties.
        sqrt(
            groups.n_repeat * groups.n_one_time / 12.0
            * (
                groups.n_repeat + groups.n_one_time + 1
                - coalesce(ties.tie_term, 0)
                / nullif((groups.n_repeat + groups.n_one_time) * (groups.n_repeat + groups.n_one_time - 1), 0)
            )
        ) as u_sd,
        sqrt(
            ((groups.n_repeat - 1) * groups.variance_repeat + (groups.n_one_time - 1) * groups.variance_one_time)
            / nullif(groups.n_repeat + groups.n_one_time - 2, 0)
        ) as pooled_sd
    from groups
    left join rank_sums on groups.indicator = rank_sums.indicator
    left join ties on groups.indicator = ties.indicator
),

z_scores as (
    select
        *,
        case
            -- Review: each buyer's value comes from the other buyers' labels, so the values are not independent of
            -- the labels they are tested against; on random labels of the real buyers this passed p < 0.05 in 16 %
            -- of 2,000 shuffles, not 5 %. Its shares stay; its p-value would mislead.
            when indicator = 'bought_repeat_favoured_product'
                then 'its values come from the other buyers'' labels: Mann-Whitney''s p would not hold'
            when n_repeat < 10 or n_one_time < 10 then 'fewer than 10 buyers with a value in a group'
            when u_sd = 0 then 'every value is tied'
        end as untested_reason
    from u_statistics
),

tests as (
    select
        *,
        -- The continuity correction moves U half a step towards its mean (never past it).
        case
            when untested_reason is null
                then (
                    sign(mann_whitney_u - u_mean) * greatest(abs(mann_whitney_u - u_mean) - 0.5, 0) / u_sd
                )::double precision
        end as z_score
    from z_scores
),

erfc_terms as (
    select
        *,
        abs(z_score) / sqrt(2.0::double precision) as erfc_x,
        1 / (1 + 0.3275911 * abs(z_score) / sqrt(2.0::double precision)) as erfc_t
    from tests
),

p_values as (
    -- Two-sided p = erfc(|z| / sqrt(2)). PostgreSQL has no erf: Abramowitz & Stegun 7.1.26,
    -- erfc(x) ~ t (a1 + t (a2 + t (a3 + t (a4 + t a5)))) exp(-x^2) with t = 1 / (1 + 0.3275911 x) for x >= 0,
    -- absolute error below 1.5e-7. Past x = 26 erfc is below 1e-290 and exp() would underflow: 0.
    select
        *,
        case
            -- least() would ignore a NULL and give 1: an untested indicator keeps no p-value.
            when z_score is null then null
            when erfc_x > 26 then 0::double precision
            else
                least(
                    1::double precision,
                    erfc_t * (
                        0.254829592 + erfc_t * (
                            -0.284496736 + erfc_t * (1.421413741 + erfc_t * (-1.453152027 + erfc_t * 1.061405429))
                        )
                    ) * exp(-erfc_x * erfc_x)
                )
        end as p_value
    from erfc_terms
),

final as (
    select
        indicator,
        is_binary,
        n_repeat,
        n_one_time,
        round(mean_repeat, 4) as mean_repeat,
        round(mean_one_time, 4) as mean_one_time,
        round(median_repeat::numeric, 4) as median_repeat,
        round(median_one_time::numeric, 4) as median_one_time,
        round(mean_repeat - mean_one_time, 4) as mean_difference,
        round(mean_repeat / nullif(mean_one_time, 0), 4) as mean_ratio,
        round((mean_repeat - mean_one_time) / nullif(pooled_sd, 0), 4) as cohens_d,
        -- 2U / (n1 n0) - 1: from -1 (every one-time buyer above every repeat buyer) to 1 (the reverse).
        round(2 * mann_whitney_u / nullif(n_repeat * n_one_time, 0) - 1, 4) as rank_biserial,
        mann_whitney_u,
        round(z_score::numeric, 4) as z_score,
        p_value,
        untested_reason
    from p_values
)

select * from final
