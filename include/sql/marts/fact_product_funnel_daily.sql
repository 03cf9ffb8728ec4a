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
        -- A session starts at its first event, so this drops nothing a full refresh keeps (only a product event
        -- from before the lookback whose event the events model, rebuilt whole, no longer has), and it lets a
        -- daily run read one day of the merged view through its created_at index instead of all of it.
        and created_at >= {{ interval_start }}
        and created_at < {{ interval_end }}
),

events_with_first_view as (
    -- Each event with its session's first view of the product: the steps below read the events once, with no
    -- join between them (a join's row estimate for one day's events picked nested loops).
    select
        session_id,
        product_id,
        event_type,
        created_at,
        min(created_at) filter (where event_type = 'page_view')
            over (partition by session_id, product_id)
            as first_viewed_at
    from product_events
),

session_products as (
    -- A purchase at or after the first add-to-cart exists exactly when the last purchase is at or after it.
    select
        session_id,
        product_id,
        min(first_viewed_at) as first_viewed_at,
        min(created_at) filter (
            where event_type = 'add_to_cart' and created_at >= first_viewed_at
        ) as first_added_at,
        max(created_at) filter (where event_type = 'purchase') as last_purchased_at
    from events_with_first_view
    group by session_id, product_id
),

steps as (
    select
        product_id,
        count(*) as sessions_viewed,
        count(first_added_at) as sessions_added_to_cart,
        count(*) filter (where last_purchased_at >= first_added_at) as sessions_purchased
    from session_products
    where first_viewed_at is not null
    group by product_id
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
