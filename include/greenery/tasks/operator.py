"""The Airflow operator that builds one SQL model. Imported at DAG parse time, so it imports little:
the database and the build code load when the task runs."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperator

from greenery.project.models import Model


class SqlModelOperator(BaseOperator):
    """Build one model of include/sql into the run's build schema for its layer (see greenery.wap)."""

    ui_color = "#d9f2d0"
    template_fields = ("conn_id",)

    def __init__(self, *, model: Model, models: dict[str, Model], conn_id: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.models = models
        self.conn_id = conn_id
        self.doc_md = f"Builds `{model.relation}` from `{model.path.name}` ({model.materialized})."

    def execute(self, context: Any) -> dict[str, Any]:
        from greenery.tasks import build  # psycopg and the build code: not at parse time

        return build.build_one(context, self.model, self.models, self.conn_id)
