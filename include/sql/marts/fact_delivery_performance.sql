{{ config(unique_key=['dimension', 'value']) }}

-- Per carrier and per state: how many deliveries, on time against the carrier's estimate, how fast.
with

orders as (
    select * from {{ ref('fact_orders') }}
),

addresses as (
    select * from {{ ref('stg_postgres__addresses') }}
),

delivered as (
    select
        orders.shipping_service,
        addresses.state,
        orders.days_to_deliver,
        orders.estimated_delivery_at is not null as has_estimate,
        orders.delivered_at <= orders.estimated_delivery_at as on_time
    from orders
    left join addresses on orders.address_id = addresses.address_id
    where orders.status = 'delivered' and orders.delivered_at is not null
),

by_dimension as (
    select
        'carrier' as dimension,
        coalesce(shipping_service, 'unknown') as value,
        days_to_deliver,
        has_estimate,
        on_time
    from delivered
    union all
    select
        'state' as dimension,
        coalesce(state, 'unknown') as value,
        days_to_deliver,
        has_estimate,
        on_time
    from delivered
),

final as (
    select
        dimension,
        value,
        count(*) as delivered_orders,
        count(*) filter (where has_estimate) as with_estimate,
        count(*) filter (where on_time) as on_time,
        round(
            (count(*) filter (where on_time))::numeric / nullif(count(*) filter (where has_estimate), 0), 4
        ) as on_time_share,
        round((percentile_cont(0.5) within group (order by days_to_deliver))::numeric, 4) as days_to_deliver_p50,
        round((percentile_cont(0.9) within group (order by days_to_deliver))::numeric, 4) as days_to_deliver_p90
    from by_dimension
    group by dimension, value
)

select * from final
