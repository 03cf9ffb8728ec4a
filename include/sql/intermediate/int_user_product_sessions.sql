{{ config(unique_key=['session_id', 'product_id']) }}

with

events as (
    select * from {{ ref('stg_postgres__events') }}
),

order_items as (
    select * from {{ ref('stg_postgres__order_items') }}
),

product_events as (
    select
        session_id,
        user_id,
        product_id,
        event_type,
        created_at
    from events
    where product_id is not null
),

-- A checkout event carries the order, not the products: the order's items say what was bought.
purchases as (
    select
        events.session_id,
        events.user_id,
        order_items.product_id,
        'purchase' as event_type,
        events.created_at
    from events
    inner join order_items on events.order_id = order_items.order_id
    where events.event_type = 'checkout'
),

session_products as (
    select
        session_id,
        product_id,
        min(user_id) as user_id,
        min(created_at) as first_event_at,
        count(*) filter (where event_type = 'page_view') as page_views,
        bool_or(event_type = 'page_view') as viewed,
        bool_or(event_type = 'add_to_cart') as added_to_cart,
        bool_or(event_type = 'purchase') as purchased
    from (
        select * from product_events
        union all
        select * from purchases
    ) as product_activity
    group by session_id, product_id
)

select * from session_products
