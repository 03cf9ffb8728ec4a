{{ config(unique_key='promo_id', quarantine=true, column_types={'discount': 'numeric(12, 2)'}) }}

-- Orders of a quarantined promo are quarantined with it (orphan_promo): their totals cannot be checked.

with

source as (
    select * from {{ source('promos') }}
),

renamed as (
    select
        nullif(trim(promo_id::text), '') as promo_id,
        discount::numeric as discount,
        nullif(lower(trim(status::text)), '') as promo_status
    from source
),

checked as (
    select
        *,
        case
            when promo_id is null then 'null_key'
            when discount in ('NaN', 'Infinity', '-Infinity') then 'non_finite_number'
            when round(abs(discount), 2) >= 1e10 then 'out_of_range_number'
            -- Unknown, not zero: its orders' totals cannot be checked (they go as orphan_promo).
            when discount is null then 'null_amount'
            -- As an order's negative amount: held back with its orders (orphan_promo), not a block of the run
            -- (user trial: the catalog said quarantine for every other negative amount).
            when discount < 0 then 'negative_amount'
        end as quarantine_rule
    from renamed
)

select * from checked
