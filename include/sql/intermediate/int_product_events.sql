{{ config(
    materialized='incremental',
    unique_key=['event_id', 'product_id'],
    incremental_column='created_at',
    lookback_days=3,
    indexes=[['event_id', 'product_id'], 'created_at', 'session_id'],
) }}

-- One row per product touched by an event: page views and add-to-carts name their product; a checkout
-- carries the order instead, so it becomes one 'purchase' row per product of that order.
with

events as (
    select * from {{ ref('stg_postgres__events') }}
    {% if is_incremental() %}
        where created_at >= {{ incremental_since }}
    {% endif %}
),

order_items as (
    select * from {{ ref('stg_postgres__order_items') }}
),

product_views_and_carts as (
    select
        event_id,
        session_id,
        user_id,
        product_id,
        event_type,
        created_at
    from events
    where product_id is not null
),

purchases as (
    select
        events.event_id,
        events.session_id,
        events.user_id,
        order_items.product_id,
        'purchase' as event_type,
        events.created_at
    from events
    inner join order_items on events.order_id = order_items.order_id
    where events.event_type = 'checkout'
),

final as (
    select * from product_views_and_carts
    union all
    select * from purchases
)

select * from final
