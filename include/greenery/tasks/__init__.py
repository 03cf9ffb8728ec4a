"""The bodies of the DAG's tasks. Each takes Airflow's task context and returns plain JSON-able values,
so ``dags/greenery_daily.py`` only wires them and tests can call them without a scheduler."""
