"""The Data quality view served by Airflow's API server (see plugins/greenery_quality_plugin.py)."""
