{{ config(unique_key='product_id', quarantine=true) }}

with

source as (
    select * from {{ source('products') }}
),

renamed as (
    select
        nullif(trim(product_id::text), '') as product_id,
        nullif(trim(name::text), '') as product_name,
        price::numeric(12, 2) as price,
        inventory::integer as inventory
    from source
),

checked as (
    select
        *,
        case
            when product_id is null then 'null_key'
            when product_id !~ {{ uuid_pattern }} then 'malformed_uuid'
            when price is null or price < 0 then 'negative_price'
            when inventory < 0 then 'negative_inventory'
        end as quarantine_rule
    from renamed
)

select * from checked
