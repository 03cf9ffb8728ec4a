{{ config(
    materialized='incremental',
    unique_key='event_hour',
    incremental_column='event_hour',
    lookback_days=3,
    indexes=['event_hour'],
) }}

-- Distinct sessions with an event in each UTC hour (hours without events have no row); an hour is
-- recomputed whole, since incremental_since falls on a day boundary. Every event type counts, shipping
-- included, as in the analytics team's dbt model (its published answers: tests/test_dag_real_greenery.py).
with

events as (
    select * from {{ ref('stg_postgres__events') }}
    {% if is_incremental() %}
        where created_at >= {{ incremental_since }}
    {% endif %}
),

hours as (
    select
        date_trunc('hour', created_at) as event_hour,
        count(distinct session_id) as sessions
    from events
    group by event_hour
)

select * from hours
