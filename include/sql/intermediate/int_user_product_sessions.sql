{{ config(
    materialized='incremental',
    unique_key=['session_id', 'product_id'],
    incremental_column='first_event_at',
    lookback_days=3,
    indexes=[['session_id', 'product_id'], 'first_event_at'],
    full_build_settings={'enable_indexscan': 'off', 'enable_bitmapscan': 'off'},
) }}

-- full_build_settings: a full build reads every event; walking them in session_id order through the index
-- that serves incremental runs took 1.6-2.7x the time of a scan and a sort at scale 1000 (the planner's choice).
-- Incremental runs recompute every session with a product event from incremental_since on, from all
-- of that session's product events, and every published session whose product events reached into that window
-- (one of them may be gone: deleted from raw, or quarantined with a conflicting copy).
with

product_events as (
    select * from {{ ref('int_product_events') }}
    {% if is_incremental() %}
        -- = any(array(...)), not in (...): the sessions become one value, which each part of the merged view
        -- (the published product events, this run's delta) looks up in its session_id index; a semi-join read the view
        -- whole (2.5-3.0 s at scale 1000 against 0.3 s). Only an aggregate reads this CTE: the planner's guess of a
        -- few rows for an array it cannot see into picks no join.
        where session_id = any(array(
            select recent.session_id
            from {{ ref('int_product_events') }} as recent
            where recent.created_at >= {{ incremental_since }}
            union
            select published.session_id
            from {{ this }} as published
            where published.last_event_at >= {{ incremental_since }}
        ))
    {% endif %}
),

session_products as (
    select
        session_id,
        product_id,
        min(user_id) as user_id,
        min(created_at) as first_event_at,
        max(created_at) as last_event_at,
        count(*) filter (where event_type = 'page_view') as page_views,
        bool_or(event_type = 'page_view') as viewed,
        bool_or(event_type = 'add_to_cart') as added_to_cart,
        bool_or(event_type = 'purchase') as purchased
    from product_events
    group by session_id, product_id
)

select * from session_products
