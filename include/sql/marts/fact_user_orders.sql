{{ config(unique_key='user_id') }}

-- One row per buyer (a user with at least one order), so avg(is_repeat_buyer::int) is the repeat rate.
with

orders as (
    select * from {{ ref('int_orders') }}
),

final as (
    select
        user_id,
        count(*) as order_count,
        sum(order_total) as total_spend,
        min(created_at) as first_order_at,
        max(created_at) as last_order_at,
        count(*) >= 2 as is_repeat_buyer
    from orders
    where user_id is not null
    group by user_id
)

select * from final
