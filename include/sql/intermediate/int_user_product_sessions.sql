{{ config(unique_key=['session_id', 'product_id']) }}

with

product_events as (
    select * from {{ ref('int_product_events') }}
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
    from product_events
    group by session_id, product_id
)

select * from session_products
