{{ config(
    materialized='incremental',
    unique_key=['behavior_scope', 'user_id'],
    incremental_column='last_event_at',
    lookback_days=3,
    indexes=[['behavior_scope', 'user_id'], 'last_event_at'],
) }}

-- How each user browsed, one row per user and scope (int_user_behavior's scopes, which it joins): the part of
-- int_user_behavior that reads events, kept apart so that a daily run reads only some users' events.
-- - all_history: every user with an event;
-- - through_first_order: every buyer (also without events), over the events up to their first order's checkout
--   (first_order_id and window_end record that window), except those of a session that checks out only later
--   orders (it belongs to the second order even when it began earlier).
-- Shipping events are the shop's, not the user's: they are no behaviour, and would stretch a session by days.
-- Incremental runs recompute, from all of their events, the users with an event from incremental_since on, those
-- whose published row the merge deletes (an event of theirs may be gone) and
-- the buyers whose window is not the one published (a first order, or its checkout, came or changed). A row
-- nobody recomputes keeps its events, since events before incremental_since are not rebuilt either. A user who
-- stops being a buyer keeps a through_first_order row here while none of its events is in the window (the merge
-- deletes it otherwise), which int_user_behavior (buyers only) never reads.
with

first_orders as (
    select
        user_id,
        first_order_id as order_id,
        first_order_at as created_at
    from {{ ref('int_buyers') }}
),

first_order_checkouts as (
    select
        checkouts.order_id,
        min(checkouts.created_at) as checked_out_at
    from {{ ref('stg_postgres__events') }} as checkouts
    inner join first_orders on checkouts.order_id = first_orders.order_id
    where checkouts.event_type = 'checkout' and checkouts.user_id is not null
    group by checkouts.order_id
),

buyers as (
    select
        first_orders.user_id,
        first_orders.order_id as first_order_id,
        -- The checkout event may be written a moment after the order row: the window takes in both.
        greatest(first_orders.created_at, first_order_checkouts.checked_out_at) as window_end
    from first_orders
    left join first_order_checkouts on first_orders.order_id = first_order_checkouts.order_id
),

{% if is_incremental() %}
    recomputed_users as (
        select recent.user_id
        from {{ ref('stg_postgres__events') }} as recent
        where
            recent.created_at >= {{ incremental_since }}
            and recent.user_id is not null
            and recent.event_type in ('page_view', 'add_to_cart', 'checkout')
        union
        select buyers.user_id
        from buyers
        left join {{ this }} as published
            on
                published.behavior_scope = 'through_first_order'
                and buyers.user_id = published.user_id
        where
            published.first_order_id is distinct from buyers.first_order_id
            or published.window_end is distinct from buyers.window_end
        union
        -- The merge deletes these rows: rebuilt from the events the user still has (an event may be gone).
        select published.user_id
        from {{ this }} as published
        where published.last_event_at >= {{ incremental_since }}
    ),
{% endif %}

events as (
    select
        user_id,
        session_id,
        event_type,
        product_id,
        order_id,
        created_at
    from {{ ref('stg_postgres__events') }}
    where
        user_id is not null
        and event_type in ('page_view', 'add_to_cart', 'checkout')
        {% if is_incremental() %}
            and user_id in (select recomputed_users.user_id from recomputed_users)
        {% endif %}
),

scoped_buyers as (
    select * from buyers
    {% if is_incremental() %}
        where user_id in (select recomputed_users.user_id from recomputed_users)
    {% endif %}
),

later_order_sessions as (
    select events.session_id
    from events
    inner join scoped_buyers on events.user_id = scoped_buyers.user_id
    where events.event_type = 'checkout' and events.order_id is not null
    group by events.session_id, scoped_buyers.first_order_id
    having bool_and(events.order_id != scoped_buyers.first_order_id)
),

scoped_events as (
    select
        'all_history' as behavior_scope,
        user_id,
        session_id,
        event_type,
        product_id,
        created_at
    from events
    union all
    select
        'through_first_order' as behavior_scope,
        events.user_id,
        events.session_id,
        events.event_type,
        events.product_id,
        events.created_at
    from events
    inner join scoped_buyers on events.user_id = scoped_buyers.user_id
    where
        events.created_at <= scoped_buyers.window_end
        and not exists (
            select 1 from later_order_sessions
            where later_order_sessions.session_id = events.session_id
        )
),

session_events as (
    -- Each scoped event with its session's first add-to-cart: the session's aggregates below then read
    -- the events once (a join back to them, to find the checkout after it, read and sorted them again).
    select
        *,
        min(created_at) filter (where event_type = 'add_to_cart')
            over (partition by behavior_scope, user_id, session_id)
            as first_add_to_cart_at
    from scoped_events
),

scoped_sessions as (
    select
        behavior_scope,
        user_id,
        session_id,
        min(created_at) as started_at,
        max(created_at) as ended_at,
        count(*) filter (where event_type = 'page_view') as page_views,
        count(*) filter (where event_type = 'add_to_cart') as add_to_carts,
        count(*) filter (where event_type = 'checkout') as checkouts,
        -- From the session's first add-to-cart to its first checkout at or after it. Events without a session id
        -- form one group here but are no session: they have no such time.
        extract(
            epoch from
            min(created_at) filter (
                where event_type = 'checkout' and created_at >= first_add_to_cart_at and session_id is not null
            )
            - min(first_add_to_cart_at)
        ) / 60 as minutes_cart_to_checkout
    from session_events
    group by behavior_scope, user_id, session_id
),

session_behavior as (
    select
        behavior_scope,
        user_id,
        max(ended_at) as last_event_at,
        count(*) as sessions,
        sum(page_views)::bigint as page_views,
        sum(add_to_carts)::bigint as add_to_carts,
        count(*) filter (where add_to_carts > 0 and checkouts = 0) as carts_abandoned,
        avg(extract(epoch from ended_at - started_at) / 60) as avg_session_minutes,
        sum(extract(epoch from ended_at - started_at) / 60) as total_session_minutes,
        percentile_cont(0.5) within group (
            order by minutes_cart_to_checkout::double precision
        ) as median_minutes_cart_to_checkout
    from scoped_sessions
    group by behavior_scope, user_id
),

viewed_products as (
    select
        behavior_scope,
        user_id,
        count(distinct product_id) as products_viewed
    from scoped_events
    where event_type = 'page_view'
    group by behavior_scope, user_id
),

scoped_users as (
    select
        'all_history' as behavior_scope,
        user_id,
        null::text as first_order_id,
        null::timestamptz as window_end
    from session_behavior
    where behavior_scope = 'all_history'
    union all
    select
        'through_first_order' as behavior_scope,
        user_id,
        first_order_id,
        window_end
    from scoped_buyers
),

final as (
    select
        scoped_users.behavior_scope,
        scoped_users.user_id,
        scoped_users.first_order_id,
        scoped_users.window_end,
        session_behavior.last_event_at,
        coalesce(session_behavior.sessions, 0) as sessions,
        coalesce(session_behavior.page_views, 0) as page_views,
        coalesce(viewed_products.products_viewed, 0) as products_viewed,
        coalesce(session_behavior.add_to_carts, 0) as add_to_carts,
        coalesce(session_behavior.carts_abandoned, 0) as carts_abandoned,
        session_behavior.avg_session_minutes,
        coalesce(session_behavior.total_session_minutes, 0) as total_session_minutes,
        session_behavior.median_minutes_cart_to_checkout
    from scoped_users
    left join session_behavior
        on
            scoped_users.behavior_scope = session_behavior.behavior_scope
            and scoped_users.user_id = session_behavior.user_id
    left join viewed_products
        on
            scoped_users.behavior_scope = viewed_products.behavior_scope
            and scoped_users.user_id = viewed_products.user_id
)

select * from final
