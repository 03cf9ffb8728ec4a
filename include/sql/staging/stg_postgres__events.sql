{{ config(unique_key='event_id') }}

with

source as (
    select * from {{ source('events') }}
),

renamed as (
    select
        nullif(trim(event_id::text), '') as event_id,
        nullif(trim(session_id::text), '') as session_id,
        nullif(trim(user_id::text), '') as user_id,
        nullif(trim(page_url::text), '') as page_url,
        created_at::timestamptz as created_at,
        nullif(lower(trim(event_type::text)), '') as event_type,
        nullif(trim(order_id::text), '') as order_id,
        nullif(trim(product_id::text), '') as product_id
    from source
)

select * from renamed
