{{ config(unique_key='user_id', quarantine=true) }}

with

source as (
    select * from {{ source('users') }}
),

addresses as (
    select distinct address_id from {{ ref('stg_postgres__addresses') }}
),

renamed as (
    select
        nullif(trim(user_id::text), '') as user_id,
        nullif(trim(first_name::text), '') as first_name,
        nullif(trim(last_name::text), '') as last_name,
        nullif(trim(email::text), '') as email,
        nullif(trim(phone_number::text), '') as phone_number,
        created_at::timestamptz as created_at,
        updated_at::timestamptz as updated_at,
        nullif(trim(address_id::text), '') as address_id
    from source
),

checked as (
    select
        renamed.*,
        case
            when renamed.user_id is null then 'null_key'
            when {{ malformed_uuid('renamed.user_id') }} or {{ malformed_uuid('renamed.address_id') }}
                then 'malformed_uuid'
            -- The run's clock, not now(): a rerun of this run next year decides the same.
            when renamed.created_at > {{ valid_until }} or renamed.updated_at > {{ valid_until }}
                then 'future_timestamp'
            when renamed.created_at < {{ valid_since }} or renamed.updated_at < {{ valid_since }}
                then 'far_past_timestamp'
            when renamed.address_id is not null and addresses.address_id is null then 'orphan_address'
        end as quarantine_rule
    from renamed
    left join addresses on renamed.address_id = addresses.address_id
)

select * from checked
