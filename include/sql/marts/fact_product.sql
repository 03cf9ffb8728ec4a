{{ config(unique_key='product_id') }}

with

products as (
    select * from {{ ref('stg_postgres__products') }}
),

order_items as (
    select * from {{ ref('int_order_items') }}
),

product_sessions as (
    select * from {{ ref('int_user_product_sessions') }}
),

sales as (
    select
        product_id,
        count(distinct order_id) as order_count,
        sum(quantity) as units_sold
    from order_items
    group by product_id
),

sessions as (
    select
        product_id,
        count(*) filter (where viewed) as sessions_viewed,
        count(*) filter (where added_to_cart) as sessions_added_to_cart,
        count(*) filter (where purchased) as sessions_purchased
    from product_sessions
    group by product_id
),

final as (
    select
        products.product_id,
        products.product_name,
        products.inventory,
        coalesce(sales.order_count, 0) as order_count,
        coalesce(sales.units_sold, 0) as units_sold,
        coalesce(sessions.sessions_viewed, 0) as sessions_viewed,
        coalesce(sessions.sessions_added_to_cart, 0) as sessions_added_to_cart,
        coalesce(sessions.sessions_purchased, 0) as sessions_purchased,
        round(sessions.sessions_purchased::numeric / nullif(sessions.sessions_viewed, 0), 4) as conversion_rate
    from products
    left join sales on products.product_id = sales.product_id
    left join sessions on products.product_id = sessions.product_id
)

select * from final
