{{ config(unique_key='order_id') }}

with

source as (
    select * from {{ source('orders') }}
),

renamed as (
    select
        nullif(trim(order_id::text), '') as order_id,
        nullif(trim(user_id::text), '') as user_id,
        nullif(trim(promo_id::text), '') as promo_id,
        nullif(trim(address_id::text), '') as address_id,
        created_at::timestamptz as created_at,
        order_cost::numeric(12, 2) as order_cost,
        shipping_cost::numeric(12, 2) as shipping_cost,
        order_total::numeric(12, 2) as order_total,
        nullif(trim(tracking_id::text), '') as tracking_id,
        nullif(lower(trim(shipping_service::text)), '') as shipping_service,
        estimated_delivery_at::timestamptz as estimated_delivery_at,
        delivered_at::timestamptz as delivered_at,
        nullif(lower(trim(status::text)), '') as status
    from source
)

select * from renamed
