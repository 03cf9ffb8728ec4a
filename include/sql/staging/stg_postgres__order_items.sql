{{ config(unique_key=['order_id', 'product_id'], quarantine=true) }}

-- Lines of quarantined or unknown orders and products are quarantined with them (orphan_*).

with

source as (
    select * from {{ source('order_items') }}
),

-- Materialized: each id is trimmed once, not again in every rule that reads it (a CTE read once is inlined, and
-- its expressions repeated where they are used): 4.0-4.2 s against 2.7-2.8 s for 866 k order lines at scale 1000.
renamed as materialized (
    select
        nullif(trim(order_id::text), '') as order_id,
        nullif(trim(product_id::text), '') as product_id,
        quantity::integer as quantity
    from source
),

orders as (
    select distinct order_id from {{ ref('stg_postgres__orders') }}
),

products as (
    select distinct product_id from {{ ref('stg_postgres__products') }}
),

checked as (
    select
        renamed.*,
        case
            when renamed.order_id is null or renamed.product_id is null then 'null_key'
            when {{ malformed_uuid('renamed.order_id') }} or {{ malformed_uuid('renamed.product_id') }}
                then 'malformed_uuid'
            when renamed.quantity is null or renamed.quantity <= 0 then 'invalid_quantity'
            when orders.order_id is null then 'orphan_order'
            when products.product_id is null then 'orphan_product'
        end as quarantine_rule
    from renamed
    left join orders on renamed.order_id = orders.order_id
    left join products on renamed.product_id = products.product_id
)

select * from checked
