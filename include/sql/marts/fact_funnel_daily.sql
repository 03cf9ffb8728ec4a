{{ config(materialized='daily_partition', partition_by='date', unique_key='date') }}

-- The session funnel of the run's day: the sessions that started in [interval_start, interval_end) and
-- how far each got by interval_end, step by step and in order (an add-to-cart, then a checkout at or
-- after the session's first add-to-cart). A session that goes on past midnight keeps the steps it took
-- before it, so a rerun of the day gives the same row whenever it runs.
with

day_sessions as (
    select session_id from {{ ref('int_user_sessions') }}
    where
        session_started_at >= {{ interval_start }}
        and session_started_at < {{ interval_end }}
),

events as (
    select * from {{ ref('stg_postgres__events') }}
    where
        session_id in (select day_sessions.session_id from day_sessions)
        and created_at < {{ interval_end }}
),

carts as (
    select
        session_id,
        min(created_at) as first_add_to_cart_at
    from events
    where event_type = 'add_to_cart'
    group by session_id
),

checkouts as (
    select distinct events.session_id
    from events
    inner join carts on events.session_id = carts.session_id
    where
        events.event_type = 'checkout'
        and events.created_at >= carts.first_add_to_cart_at
),

steps as (
    select
        count(*) as sessions,
        count(carts.session_id) as sessions_with_add_to_cart,
        count(checkouts.session_id) as sessions_with_checkout
    from day_sessions
    left join carts on day_sessions.session_id = carts.session_id
    left join checkouts on day_sessions.session_id = checkouts.session_id
),

final as (
    select
        {{ run_date }} as date,
        sessions,
        sessions_with_add_to_cart,
        sessions_with_checkout,
        round(sessions_with_add_to_cart::numeric / nullif(sessions, 0), 4) as add_to_cart_rate,
        round(sessions_with_checkout::numeric / nullif(sessions_with_add_to_cart, 0), 4) as checkout_rate,
        round(sessions_with_checkout::numeric / nullif(sessions, 0), 4) as conversion_rate
    from steps
)

select * from final
