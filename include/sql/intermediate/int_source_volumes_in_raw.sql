{{ config(unique_key=['source_table', 'day']) }}

-- Rows raw holds per table and UTC day of creation, every day up to the run's clock, with the newest of them: raw
-- as this run read it, once. int_source_volumes_daily takes its days from here (an incremental run its lookback
-- only), and its raw-changed check compares the days runs no longer read with it: that check read every day of raw
-- itself, and Great Expectations runs a query check's query twice (its rows, then their count). Read from raw, not
-- staging, so quarantined rows count too. An order's lines count on their order's day; lines of an order raw does
-- not hold have no day and are not counted.
with

orders as (
    select created_at from {{ source('orders') }}
),

events as (
    select created_at from {{ source('events') }}
),

users as (
    select created_at from {{ source('users') }}
),

-- One day per order id, should raw hold an order twice (a duplicate its suite blocks on): the first.
order_days as (
    select
        order_id,
        min(created_at) as created_at
    from {{ source('orders') }}
    group by order_id
),

order_items as (
    select order_days.created_at
    from {{ source('order_items') }} as order_items
    inner join order_days
        on order_items.order_id = order_days.order_id
),

created as (
    select
        'orders' as source_table,
        created_at
    from orders
    union all
    select
        'events' as source_table,
        created_at
    from events
    union all
    select
        'users' as source_table,
        created_at
    from users
    union all
    select
        'order_items' as source_table,
        created_at
    from order_items
),

final as (
    select
        source_table,
        (created_at at time zone 'UTC')::date as day,
        count(*) as row_count,
        max(created_at) as newest_created_at
    from created
    -- Rows created before valid_since are placeholders the staging row rules refuse; after valid_until, the
    -- future as of the run's clock.
    where created_at >= {{ valid_since }} and created_at <= {{ valid_until }}
    group by source_table, day
)

select * from final
