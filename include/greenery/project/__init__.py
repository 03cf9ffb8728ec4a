"""The dbt-like project: SQL model files, their graph, and rendering them for a run."""
