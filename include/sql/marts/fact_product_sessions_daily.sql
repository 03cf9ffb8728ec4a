{{ config(materialized='daily_partition', partition_by='date', unique_key=['date', 'product_id']) }}

-- The run's day only: product events of [interval_start, interval_end), counted by UTC date.
with

product_events as (
    select * from {{ ref('int_product_events') }}
    where
        created_at >= {{ interval_start }}
        and created_at < {{ interval_end }}
),

final as (
    select
        {{ run_date }} as date,
        product_id,
        count(*) filter (where event_type = 'page_view') as page_views,
        count(distinct session_id) filter (where event_type = 'page_view') as sessions_viewed,
        count(distinct session_id) filter (where event_type = 'add_to_cart') as sessions_added_to_cart,
        count(distinct session_id) filter (where event_type = 'purchase') as sessions_purchased
    from product_events
    group by product_id
)

select * from final
