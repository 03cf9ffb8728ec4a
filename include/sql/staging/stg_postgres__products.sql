{{ config(unique_key='product_id') }}

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
)

select * from renamed
