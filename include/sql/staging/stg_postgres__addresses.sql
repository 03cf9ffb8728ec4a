{{ config(unique_key='address_id', quarantine=true) }}

with

source as (
    select * from {{ source('addresses') }}
),

renamed as (
    select
        nullif(trim(address_id::text), '') as address_id,
        nullif(trim(address::text), '') as address,
        -- Zipcodes are identifiers: a source that stored them as numbers lost the leading zeros. Only
        -- 1 to 5 digits are padded; anything else is kept as it came and quarantined (lpad would cut it).
        case
            when trim(zipcode::text) ~ '^[0-9]{1,5}$' then lpad(trim(zipcode::text), 5, '0')
            else nullif(trim(zipcode::text), '')
        end as zipcode,
        nullif(trim(state::text), '') as state,
        nullif(trim(country::text), '') as country
    from source
),

checked as (
    select
        *,
        case
            when address_id is null then 'null_key'
            when {{ malformed_uuid('address_id') }} then 'malformed_uuid'
            when zipcode !~ '^[0-9]{5}$' then 'invalid_zipcode'
        end as quarantine_rule
    from renamed
)

select * from checked
