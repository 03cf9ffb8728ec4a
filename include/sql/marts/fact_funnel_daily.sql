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
        -- Implied (a session starts at its first event, and its events are this run's), and what lets a daily
        -- run read one day of the merged view through its created_at index instead of all of it.
        and created_at >= {{ interval_start }}
        and created_at < {{ interval_end }}
),

session_steps as (
    -- One pass per session, no join: a checkout at or after the first add-to-cart exists exactly when the last
    -- checkout is at or after it.
    select
        session_id,
        min(created_at) filter (where event_type = 'add_to_cart') as first_add_to_cart_at,
        max(created_at) filter (where event_type = 'checkout') as last_checkout_at
    from events
    group by session_id
),

steps as (
    select
        count(*) as sessions,
        count(session_steps.first_add_to_cart_at) as sessions_with_add_to_cart,
        count(*) filter (
            where session_steps.last_checkout_at >= session_steps.first_add_to_cart_at
        ) as sessions_with_checkout
    from day_sessions
    left join session_steps on day_sessions.session_id = session_steps.session_id
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
