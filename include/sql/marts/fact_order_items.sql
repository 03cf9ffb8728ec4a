{{ config(unique_key=['order_id', 'product_id']) }}

with

order_items as (
    select * from {{ ref('int_order_items') }}
),

final as (
    select
        order_id,
        product_id,
        quantity,
        unit_price,
        line_total
    from order_items
)

select * from final
