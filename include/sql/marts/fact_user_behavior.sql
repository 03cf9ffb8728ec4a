{{ config(unique_key='user_id') }}

-- One row per user: how they browsed and bought over all history (see int_user_behavior).
with

behavior as (
    select * from {{ ref('int_user_behavior') }}
    where behavior_scope = 'all_history'
),

final as (
    select
        user_id,
        is_buyer,
        is_repeat_buyer,
        sessions,
        page_views,
        products_viewed,
        add_to_carts,
        carts_abandoned,
        avg_session_minutes,
        total_session_minutes,
        median_minutes_cart_to_checkout,
        orders,
        promo_order_share,
        avg_order_total,
        avg_order_units,
        avg_order_products,
        avg_days_between_orders,
        deliveries_known,
        late_deliveries,
        bought_repeat_favoured_product,
        days_signup_to_first_order
    from behavior
)

select * from final
