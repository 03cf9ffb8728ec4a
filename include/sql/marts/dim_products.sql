{{ config(unique_key='product_id') }}

with

products as (
    select * from {{ ref('stg_postgres__products') }}
),

final as (
    select
        product_id,
        product_name,
        price,
        inventory
    from products
)

select * from final
