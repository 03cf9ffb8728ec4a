{# The variables the pipeline's renderer (greenery.models.render) fills in, from var('run_date'). #}

{% macro greenery_day() -%}
    {{ return(modules.datetime.date.fromisoformat(var('run_date') | string)) }}
{%- endmacro %}

{% macro greenery_run_date() -%}
    '{{ greenery_day().isoformat() }}'::date
{%- endmacro %}

{% macro greenery_interval_start() -%}
    '{{ greenery_day().isoformat() }}T00:00:00+00:00'::timestamptz
{%- endmacro %}

{% macro greenery_interval_end() -%}
    '{{ (greenery_day() + modules.datetime.timedelta(days=1)).isoformat() }}T00:00:00+00:00'::timestamptz
{%- endmacro %}

{% macro greenery_uuid_pattern() -%}
    '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
{%- endmacro %}

{# A quarantine=true model's rows that passed its rules, without the rule column. "offset 0" keeps
   PostgreSQL from flattening the subquery, which would evaluate the rules (a CASE of regexes) twice per
   row: once in the filter and once for the column. #}
{% macro greenery_without_quarantined(select_sql, rule_column='quarantine_rule') -%}
    {%- if execute -%}
        {%- set columns = get_columns_in_query(select_sql) | reject('equalto', rule_column) | list -%}
    {%- else -%}
        {%- set columns = ['*'] -%}
    {%- endif -%}
select {% for column in columns %}{{ adapter.quote(column) if column != '*' else column }}{{ ", " if not loop.last }}{% endfor %}
from (
{{ select_sql }}
offset 0
) as checked
where {{ rule_column }} is null
{%- endmacro %}

{% macro greenery_incremental_since(lookback_days) -%}
    '{{ (greenery_day() - modules.datetime.timedelta(days=lookback_days)).isoformat() }}T00:00:00+00:00'::timestamptz
{%- endmacro %}
