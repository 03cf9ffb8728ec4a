{{ config(materialized='daily_partition', partition_by='date', unique_key=['date', 'product_id']) }}

-- The run's day only: events of [interval_start, interval_end), counted by UTC date.
with

events as (
    select * from {{ ref('stg_postgres__events') }}
    where
        created_at >= {{ interval_start }}
        and created_at < {{ interval_end }}
),

order_items as (
    select * from {{ ref('stg_postgres__order_items') }}
),

product_events as (
    select
        session_id,
        product_id,
        event_type
    from events
    where product_id is not null
),

purchases as (
    select
        events.session_id,
        order_items.product_id,
        'purchase' as event_type
    from events
    inner join order_items on events.order_id = order_items.order_id
    where events.event_type = 'checkout'
),

final as (
    select
        {{ run_date }} as date,
        product_id,
        count(*) filter (where event_type = 'page_view') as page_views,
        count(distinct session_id) filter (where event_type = 'page_view') as sessions_viewed,
        count(distinct session_id) filter (where event_type = 'add_to_cart') as sessions_added_to_cart,
        count(distinct session_id) filter (where event_type = 'purchase') as sessions_purchased
    from (
        select * from product_events
        union all
        select * from purchases
    ) as product_activity
    group by product_id
)

select * from final
