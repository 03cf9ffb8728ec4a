{{ config(
    materialized='snapshot',
    unique_key='order_id',
    check_cols=['created_at', 'status', 'tracking_id', 'shipping_service', 'estimated_delivery_at', 'delivered_at'],
) }}

-- Orders' history: raw.orders holds only the current state (no updated_at), so every run observes it at the
-- end of its day and keeps a version per change of these columns (see include/greenery/materialize/snapshot.py).
-- created_at too: metrics_daily's history reads it (the day an order counts on, its delivery time), and a
-- corrected one made no version, the history keeping the old one for good (models review).
with

orders as (
    select * from {{ ref('stg_postgres__orders') }}
),

observed as (
    select
        order_id,
        created_at,
        status,
        tracking_id,
        shipping_service,
        estimated_delivery_at,
        delivered_at
    from orders
)

select * from observed
