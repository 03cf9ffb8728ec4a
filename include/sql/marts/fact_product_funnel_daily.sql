{{ config(materialized='daily_partition', partition_by='date', unique_key=['date', 'product_id']) }}

-- The product funnel of the run's day: for each product, the sessions that started in
-- [interval_start, interval_end) and viewed it, then added it to the cart (at or after the first view),
-- then bought it (a checkout whose order holds it, at or after the first add-to-cart), all by
-- interval_end. fact_product_sessions_daily counts the same events by the day they happened instead.
with

day_sessions as (
    select session_id from {{ ref('int_user_sessions') }}
    where
        session_started_at >= {{ interval_start }}
        and session_started_at < {{ interval_end }}
),

product_events as (
    select * from {{ ref('int_product_events') }}
    where
        session_id in (select day_sessions.session_id from day_sessions)
        and created_at < {{ interval_end }}
),

views as (
    select
        session_id,
        product_id,
        min(created_at) as first_viewed_at
    from product_events
    where event_type = 'page_view'
    group by session_id, product_id
),

carts as (
    select
        views.session_id,
        views.product_id,
        min(product_events.created_at) as first_added_at
    from views
    inner join product_events
        on
            views.session_id = product_events.session_id
            and views.product_id = product_events.product_id
    where
        product_events.event_type = 'add_to_cart'
        and product_events.created_at >= views.first_viewed_at
    group by views.session_id, views.product_id
),

purchases as (
    select distinct
        carts.session_id,
        carts.product_id
    from carts
    inner join product_events
        on
            carts.session_id = product_events.session_id
            and carts.product_id = product_events.product_id
    where
        product_events.event_type = 'purchase'
        and product_events.created_at >= carts.first_added_at
),

steps as (
    select
        views.product_id,
        count(*) as sessions_viewed,
        count(carts.session_id) as sessions_added_to_cart,
        count(purchases.session_id) as sessions_purchased
    from views
    left join carts on views.session_id = carts.session_id and views.product_id = carts.product_id
    left join purchases on views.session_id = purchases.session_id and views.product_id = purchases.product_id
    group by views.product_id
),

final as (
    select
        {{ run_date }} as date,
        product_id,
        sessions_viewed,
        sessions_added_to_cart,
        sessions_purchased,
        round(sessions_added_to_cart::numeric / sessions_viewed, 4) as view_to_cart_rate,
        round(sessions_purchased::numeric / nullif(sessions_added_to_cart, 0), 4) as cart_to_purchase_rate,
        round(sessions_purchased::numeric / sessions_viewed, 4) as view_to_purchase_rate
    from steps
)

select * from final
