{{ config(unique_key='order_id') }}

with

orders as (
    select * from {{ ref('int_orders') }}
),

final as (
    select
        order_id,
        user_id,
        promo_id,
        address_id,
        created_at,
        order_cost,
        shipping_cost,
        discount,
        order_total,
        tracking_id,
        shipping_service,
        estimated_delivery_at,
        delivered_at,
        status,
        item_count,
        unit_count,
        case
            when status = 'delivered' and delivered_at is not null
                then round(extract(epoch from delivered_at - created_at) / 86400, 4)
        end as days_to_deliver
    from orders
)

select * from final
