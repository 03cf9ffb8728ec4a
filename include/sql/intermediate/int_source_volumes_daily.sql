{{ config(
    materialized='incremental',
    unique_key=['source_table', 'day'],
    incremental_column='day',
    lookback_days=3,
    indexes=[['source_table', 'day'], 'day'],
) }}

-- Rows created per UTC day in the raw tables that have a creation time, with the newest of them: the
-- history the volume and freshness anomaly checks compare a day with (include/expectations/). Read from
-- raw, not staging, so quarantined rows count too: a day that lost its rows shows whatever the rules did.
-- An order's lines count on their order's day (review: a truncated order_items.csv went out green, no
-- check counting its rows); lines of an order raw does not hold have no day and are not counted.
with

orders as (
    select created_at from {{ source('orders') }}
    {% if is_incremental() %}
        where created_at >= {{ incremental_since }}
    {% endif %}
),

events as (
    select created_at from {{ source('events') }}
    {% if is_incremental() %}
        where created_at >= {{ incremental_since }}
    {% endif %}
),

users as (
    select created_at from {{ source('users') }}
    {% if is_incremental() %}
        where created_at >= {{ incremental_since }}
    {% endif %}
),

-- One day per order id, should raw hold an order twice (a duplicate its suite blocks on).
order_days as (
    select
        order_id,
        min(created_at) as created_at
    from {{ source('orders') }}
    {% if is_incremental() %}
        where created_at >= {{ incremental_since }}
    {% endif %}
    group by order_id
),

order_items as (
    select order_days.created_at
    from {{ source('order_items') }} as order_items
    inner join order_days
        on order_items.order_id = order_days.order_id
),

created as (
    select
        'orders' as source_table,
        created_at
    from orders
    union all
    select
        'events' as source_table,
        created_at
    from events
    union all
    select
        'users' as source_table,
        created_at
    from users
    union all
    select
        'order_items' as source_table,
        created_at
    from order_items
),

days as (
    select
        source_table,
        (created_at at time zone 'UTC')::date as day,
        count(*) as row_count,
        max(created_at) as newest_created_at
    from created
    -- All days raw holds up to the run's clock. An incremental run recounts its lookback only: an older day keeps
    -- the counts raw had the last time a lookback held it (late or deleted rows of it wait for a full_refresh;
    -- README, Incremental models).
    where created_at >= {{ valid_since }} and created_at <= {{ valid_until }}
    group by source_table, day
)

select * from days
{% if is_published() and not is_incremental() %}
    -- A full refresh reads every day again but writes the daily marts of its own day only: a day before its
    -- lookback keeps the counts of the run that last read it, so the raw-changed check (this model's suite) goes on
    -- naming the days whose daily marts miss a change until they are run again (review: a full refresh ended the
    -- warning and left those marts stale, green). A day never read before is counted.
    where
        day >= ({{ incremental_since }} at time zone 'UTC')::date
        or not exists (
            select from {{ this }} as kept
            where kept.source_table = days.source_table and kept.day = days.day
        )
    union all
    select
        source_table,
        day,
        row_count,
        newest_created_at
    from {{ this }}
    where day < ({{ incremental_since }} at time zone 'UTC')::date
{% endif %}
