{{ config(unique_key='user_id', quarantine=true) }}

with

source as (
    select * from {{ source('users') }}
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
        *,
        case
            when user_id is null then 'null_key'
            when user_id !~ {{ uuid_pattern }} or address_id !~ {{ uuid_pattern }} then 'malformed_uuid'
            when created_at > now() then 'future_timestamp'
        end as quarantine_rule
    from renamed
)

select * from checked
