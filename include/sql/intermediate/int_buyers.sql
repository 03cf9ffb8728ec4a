{{ config(unique_key='user_id') }}

-- One row per buyer (a user with an order): their first and second orders. The one definition of a user's
-- first order, shared by the models that cut a buyer's history there (int_user_session_behavior's window on
-- events, int_user_behavior's orders and label), so that they cannot disagree on it.
-- Ties (two orders in the same second) are broken by order_id, as everywhere a "first" is picked.
with

orders as (
    select
        order_id,
        user_id,
        created_at,
        row_number() over (partition by user_id order by created_at, order_id) as order_number
    from {{ ref('int_orders') }}
    where user_id is not null
),

final as (
    select
        first_orders.user_id,
        first_orders.order_id as first_order_id,
        first_orders.created_at as first_order_at,
        second_orders.order_id as second_order_id,
        second_orders.created_at as second_order_at,
        second_orders.order_id is not null as is_repeat_buyer
    from orders as first_orders
    left join orders as second_orders
        on first_orders.user_id = second_orders.user_id and second_orders.order_number = 2
    where first_orders.order_number = 1
)

select * from final
