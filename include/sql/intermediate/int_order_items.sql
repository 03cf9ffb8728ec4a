{{ config(unique_key=['order_id', 'product_id']) }}

with

order_items as (
    select * from {{ ref('stg_postgres__order_items') }}
),

products as (
    select * from {{ ref('stg_postgres__products') }}
),

priced as (
    select
        order_items.order_id,
        order_items.product_id,
        order_items.quantity,
        products.price as unit_price,
        order_items.quantity * products.price as line_total
    from order_items
    left join products on order_items.product_id = products.product_id
)

select * from priced
