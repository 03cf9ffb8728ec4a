{{ config(unique_key='address_id') }}

with

source as (
    select * from {{ source('addresses') }}
),

renamed as (
    select
        nullif(trim(address_id::text), '') as address_id,
        nullif(trim(address::text), '') as address,
        -- Zipcodes are identifiers: a source that stored them as numbers lost the leading zeros.
        lpad(nullif(trim(zipcode::text), ''), 5, '0') as zipcode,
        nullif(trim(state::text), '') as state,
        nullif(trim(country::text), '') as country
    from source
)

select * from renamed
