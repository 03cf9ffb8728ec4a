{{ config(materialized='daily_partition', partition_by='day', unique_key=['day', 'source_table']) }}

-- What the run's daily marts are built from, per raw table: the rows created on the run's day and through it (the
-- cumulative metrics_daily), as int_source_volumes_daily holds them in this run. A daily partition, written by the
-- day's own run only: runs of other days, at once or later, leave it as it was. int_source_volumes_daily's
-- raw-changed check compares raw with it (review: rows arriving late for a day inside the lookback, or leaving
-- raw, were read again by the history tables while the day's daily marts stayed short for good, no check saying so).
with

volumes as (
    select
        source_table,
        day,
        row_count
    from {{ ref('int_source_volumes_daily') }}
    where day <= {{ run_date }}
),

final as (
    select
        {{ run_date }} as day,
        source_table,
        coalesce(sum(row_count) filter (where day = {{ run_date }}), 0)::bigint as row_count,
        sum(row_count)::bigint as rows_through
    from volumes
    group by source_table
)

select * from final
