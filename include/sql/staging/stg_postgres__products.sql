{{ config(unique_key='product_id', quarantine=true, column_types={'price': 'numeric(12, 2)'}) }}

-- price stays the source's numeric until the rules ran: NaN, Infinity or 1e15 are quarantined as they
-- are (PostgreSQL sorts NaN above every number, so `price < 0` alone lets it through).

with

source as (
    select * from {{ source('products') }}
),

renamed as (
    select
        nullif(trim(product_id::text), '') as product_id,
        nullif(trim(name::text), '') as product_name,
        price::numeric as price,
        inventory::integer as inventory
    from source
),

checked as (
    select
        *,
        case
            when product_id is null then 'null_key'
            when {{ malformed_uuid('product_id') }} then 'malformed_uuid'
            when price in ('NaN', 'Infinity', '-Infinity') then 'non_finite_number'
            -- Rounded first: 9999999999.995 passes a bare 1e10 bound and then overflows numeric(12, 2).
            when round(abs(price), 2) >= 1e10 then 'out_of_range_number'
            when price is null then 'null_amount'
            when price < 0 then 'negative_price'
            when inventory < 0 then 'negative_inventory'
        end as quarantine_rule
    from renamed
)

select * from checked
