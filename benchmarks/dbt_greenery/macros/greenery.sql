{# The variables the pipeline's renderer (greenery.project.render) fills in, from var('run_date') and the
   run's clock. #}

{% macro greenery_day() -%}
    {{ return(modules.datetime.date.fromisoformat(var('run_date') | string)) }}
{%- endmacro %}

{% macro greenery_run_date() -%}
    '{{ greenery_day().isoformat() }}'::date
{%- endmacro %}

{# GREENERY_START_DATE, the first day a run may build: var('start_date'), else the pipeline's default. #}
{% macro greenery_start_date() -%}
    '{{ var('start_date', '2021-02-10') }}'::date
{%- endmacro %}

{% macro greenery_interval_start() -%}
    '{{ greenery_day().isoformat() }}T00:00:00+00:00'::timestamptz
{%- endmacro %}

{% macro greenery_interval_end() -%}
    '{{ (greenery_day() + modules.datetime.timedelta(days=1)).isoformat() }}T00:00:00+00:00'::timestamptz
{%- endmacro %}

{# The run's clock shifted by offset_seconds: var('run_time') (an ISO timestamp with its zone; the
   benchmark's Cosmos DAG passes the Airflow run's) or dbt's own run_started_at. The pipeline's rules
   compare timestamps with it, never with now(), so a rerun gives the same answer. #}
{% macro greenery_run_time(offset_seconds=0) -%}
    {%- set given = var('run_time', none) -%}
    {%- set clock = modules.datetime.datetime.fromisoformat(given | string) if given else run_started_at -%}
    '{{ (clock + modules.datetime.timedelta(seconds=offset_seconds)).isoformat() }}'::timestamptz
{%- endmacro %}

{# A quarantine=true model's rows that passed its rules, without the rule column, cast to the model's
   column_types as greenery.materialize.quarantine casts them. "offset 0" keeps PostgreSQL from flattening
   the subquery, which would evaluate the rules (a CASE over every id) twice per row: once in the filter and
   once for the column. #}
{% macro greenery_without_quarantined(select_sql, column_types={}, rule_column='quarantine_rule') -%}
    {%- if execute -%}
        {%- set columns = get_columns_in_query(select_sql) | reject('equalto', rule_column) | list -%}
    {%- else -%}
        {%- set columns = ['*'] -%}
    {%- endif -%}
select {% for column in columns -%}
    {%- if column in column_types -%}
        {{ adapter.quote(column) }}::{{ column_types[column] }} as {{ adapter.quote(column) }}
    {%- else -%}
        {{ adapter.quote(column) if column != '*' else column }}
    {%- endif -%}
    {{ ", " if not loop.last }}
{%- endfor %}
from (
{{ select_sql }}
offset 0
) as checked
where {{ rule_column }} is null
{%- endmacro %}

{% macro greenery_incremental_since(lookback_days) -%}
    '{{ (greenery_day() - modules.datetime.timedelta(days=lookback_days)).isoformat() }}T00:00:00+00:00'::timestamptz
{%- endmacro %}

{# The pipeline's is_published() (greenery.project.render): the model's own table exists already (from an earlier
   run), so the model may compare its rows with what was published. False while dbt parses. #}
{% macro is_published() -%}
    {{ return(execute and load_relation(this) is not none) }}
{%- endmacro %}
