{{ config(unique_key='user_id') }}

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
)

select * from renamed
