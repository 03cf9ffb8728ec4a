{{ config(unique_key='session_id') }}

with

events as (
    select * from {{ ref('stg_postgres__events') }}
),

sessions as (
    select
        session_id,
        -- A session belongs to one user; min() only picks it without another group key.
        min(user_id) as user_id,
        min(created_at) as session_started_at,
        max(created_at) as session_ended_at,
        count(*) filter (where event_type = 'page_view') as page_views,
        count(*) filter (where event_type = 'add_to_cart') as add_to_carts,
        count(*) filter (where event_type = 'checkout') as checkouts,
        count(*) filter (where event_type = 'package_shipped') as packages_shipped,
        min(order_id) filter (where event_type = 'checkout') as order_id
    from events
    group by session_id
)

select * from sessions
