{{ config(unique_key=['order_id', 'product_id']) }}

with

source as (
    select * from {{ source('order_items') }}
),

renamed as (
    select
        nullif(trim(order_id::text), '') as order_id,
        nullif(trim(product_id::text), '') as product_id,
        quantity::integer as quantity
    from source
)

select * from renamed
