{{ config(unique_key='promo_id') }}

with

source as (
    select * from {{ source('promos') }}
),

renamed as (
    select
        nullif(trim(promo_id::text), '') as promo_id,
        discount::numeric(12, 2) as discount,
        nullif(lower(trim(status::text)), '') as promo_status
    from source
)

select * from renamed
