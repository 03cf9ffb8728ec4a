{# The snapshots' clock: the end of the run's day (var('run_date')), as the pipeline steps its snapshots
   (greenery.materialize.snapshot: a run observes the source at the end of its day), instead of dbt's now()
   as a timestamp without time zone. The same day's rerun then changes nothing, as the pipeline's rerun of
   its latest step. Overrides dbt-postgres' macro of the same name (the root project is searched first). #}
{% macro postgres__snapshot_get_time() -%}
    {{ greenery_interval_end() }}
{%- endmacro %}
