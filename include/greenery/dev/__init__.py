"""Running the pipeline on one machine without a deployment: embedded PostgreSQL, in-process Airflow,
the local Airflow UI, and the Greenery-shaped data generator."""
