{{ config(
    materialized='incremental',
    unique_key=['source_table', 'day'],
    incremental_column='day',
    lookback_days=3,
    indexes=[['source_table', 'day'], 'day'],
) }}

-- Rows created per UTC day in the raw tables that have a creation time, with the newest of them: the
-- history the volume and freshness anomaly checks compare a day with (include/expectations/). Counted in
-- raw, not staging (int_source_volumes_in_raw), so quarantined rows count too: a day that lost its rows shows
-- whatever the rules did. An order's lines count on their order's day (review: a truncated order_items.csv went
-- out green, no check counting its rows).
with

in_raw as (
    select * from {{ ref('int_source_volumes_in_raw') }}
),

-- All days raw holds up to the run's clock (int_source_volumes_in_raw). An incremental run recounts its lookback
-- only: an older day keeps the counts raw had the last time a lookback held it (late or deleted rows of it wait for
-- a full_refresh; README, Incremental models).
days as (
    select
        source_table,
        day,
        row_count,
        newest_created_at
    from in_raw
    {% if is_incremental() %}
        where day >= ({{ incremental_since }} at time zone 'UTC')::date
    {% endif %}
)

select * from days
{% if is_published() and not is_incremental() %}
    -- A full refresh reads every day again but writes the daily marts of its own day only: a day before its
    -- lookback keeps the counts of the run that last read it, so the raw-changed check (this model's suite) goes on
    -- naming the days whose daily marts miss a change until they are run again (review: a full refresh ended the
    -- warning and left those marts stale, green). A day never read before is counted, and so is a day before the
    -- start date: no run builds its daily marts, so only a full refresh can read it again (review: the warning
    -- told to run such a day, which the CLI and the DAG refuse, and stayed on for good).
    where
        day >= ({{ incremental_since }} at time zone 'UTC')::date
        or day < {{ start_date }}
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
    where
        day < ({{ incremental_since }} at time zone 'UTC')::date
        and day >= {{ start_date }}
{% endif %}
