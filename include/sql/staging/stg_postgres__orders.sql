{{ config(
    unique_key='order_id',
    quarantine=true,
    column_types={'order_cost': 'numeric(12, 2)', 'shipping_cost': 'numeric(12, 2)', 'order_total': 'numeric(12, 2)'},
) }}

-- Rows breaking a row-level rule go to quarantine.stg_postgres__orders (see quarantine_rule), not downstream.
-- Duplicate order ids are not quarantined: the shop's database cannot produce them, so they mean a broken
-- extract, and the critical uniqueness check blocks the publish instead.

with

source as (
    select * from {{ source('orders') }}
),

renamed as (
    select
        nullif(trim(order_id::text), '') as order_id,
        nullif(trim(user_id::text), '') as user_id,
        nullif(trim(promo_id::text), '') as promo_id,
        nullif(trim(address_id::text), '') as address_id,
        created_at::timestamptz as created_at,
        order_cost::numeric as order_cost,
        shipping_cost::numeric as shipping_cost,
        order_total::numeric as order_total,
        nullif(trim(tracking_id::text), '') as tracking_id,
        nullif(lower(trim(shipping_service::text)), '') as shipping_service,
        estimated_delivery_at::timestamptz as estimated_delivery_at,
        delivered_at::timestamptz as delivered_at,
        nullif(lower(trim(status::text)), '') as status
    from source
),

users as (
    select distinct user_id from {{ ref('stg_postgres__users') }}
),

addresses as (
    select distinct address_id from {{ ref('stg_postgres__addresses') }}
),

-- One row per id in these lookups: a duplicated parent must not duplicate the rows checked against it.
promos as (
    select distinct on (promo_id)
        promo_id,
        discount
    from {{ ref('stg_postgres__promos') }}
    order by promo_id, discount
),
-- raw.promos holds a promo's current discount only: an order published under an earlier discount keeps what it
-- was judged with then (total_mismatch below), as long as its own amounts and promo are unchanged.
{% if is_published() %}
    published as (
        select
            order_id,
            promo_id,
            order_cost,
            shipping_cost,
            order_total
        from {{ this }}
    ),
{% endif %}

checked as (
    select
        renamed.*,
        case
            when renamed.order_id is null then 'null_key'
            when
                {{ malformed_uuid('renamed.order_id') }}
                or {{ malformed_uuid('renamed.user_id') }}
                or {{ malformed_uuid('renamed.address_id') }}
                then 'malformed_uuid'
            when renamed.status is null or renamed.status not in ('preparing', 'shipped', 'delivered')
                then 'invalid_status'
            when
                renamed.order_cost in ('NaN', 'Infinity', '-Infinity')
                or renamed.shipping_cost in ('NaN', 'Infinity', '-Infinity')
                or renamed.order_total in ('NaN', 'Infinity', '-Infinity')
                then 'non_finite_number'
            when
                greatest(
                    round(abs(renamed.order_cost), 2),
                    round(abs(renamed.shipping_cost), 2),
                    round(abs(renamed.order_total), 2)
                ) >= 1e10
                then 'out_of_range_number'
            -- Unknown, not zero: greatest() and sums would skip a NULL and publish the order as free.
            when renamed.order_cost is null or renamed.shipping_cost is null or renamed.order_total is null
                then 'null_amount'
            when renamed.order_cost < 0 or renamed.shipping_cost < 0 or renamed.order_total < 0
                then 'negative_amount'
            when renamed.promo_id is not null and promos.promo_id is null then 'orphan_promo'
            when
                -- A discount can bring the bill to zero, never below.
                abs(
                    renamed.order_total
                    - greatest(renamed.order_cost + renamed.shipping_cost - coalesce(promos.discount, 0), 0)
                ) > 0.01
                {% if is_published() %}and published.order_id is null{% endif %}
                then 'total_mismatch'
            -- The run's clock, not now(): a rerun of this run next year decides the same.
            when renamed.created_at > {{ valid_until }} or renamed.delivered_at > {{ valid_until }}
                then 'future_timestamp'
            when renamed.estimated_delivery_at > {{ run_time }} + interval '366 days' then 'far_future_timestamp'
            when
                renamed.created_at < {{ valid_since }}
                or renamed.delivered_at < {{ valid_since }}
                or renamed.estimated_delivery_at < {{ valid_since }}
                then 'far_past_timestamp'
            -- After the timestamps' own bounds: a created_at in 2030 is the cause, not its delivery before it (trial).
            when renamed.delivered_at < renamed.created_at then 'delivered_before_created'
            when users.user_id is null then 'orphan_user'
            -- Most orders ship elsewhere than their user's address: a quarantined address takes its orders along.
            when renamed.address_id is not null and addresses.address_id is null then 'orphan_address'
        end as quarantine_rule
    from renamed
    left join users on renamed.user_id = users.user_id
    left join addresses on renamed.address_id = addresses.address_id
    left join promos on renamed.promo_id = promos.promo_id
    {% if is_published() %}
        left join published
            on
                renamed.order_id = published.order_id
                and renamed.promo_id = published.promo_id
                and round(renamed.order_cost, 2) = published.order_cost
                and round(renamed.shipping_cost, 2) = published.shipping_cost
                and round(renamed.order_total, 2) = published.order_total
    {% endif %}
)

select * from checked
