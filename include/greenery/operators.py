"""The Airflow operator that builds one SQL model; imported at DAG parse time, so it imports little."""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import BaseOperator

from greenery.models import Interval, Model


def interval_from_context(context: Any) -> Interval:
    """The run's day as a UTC [start, end) interval.

    Scheduled and backfill runs carry a data interval; a manual run may carry only a logical date
    or only ``run_after``, and then builds the UTC day that instant falls in.
    """
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if start is not None and end is not None and end > start:
        return Interval(start.astimezone(dt.UTC), end.astimezone(dt.UTC))
    instant = context.get("logical_date") or context["dag_run"].run_after
    return Interval.for_day(instant.astimezone(dt.UTC).date())


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
        from greenery import build, quality, warehouse

        interval = interval_from_context(context)
        with warehouse.connect(self.conn_id) as conn:
            result = build.build_model(
                conn,
                self.model,
                self.models,
                interval,
                quality.run_build(context).schema_of,
                run_id=context["run_id"],
                full_refresh=quality.full_refresh(context),
            )
        return {
            "relation": result.relation,
            "rows": result.rows,
            "quarantined": result.quarantined,
            "incremental": result.incremental,
            "seconds": round(result.seconds, 3),
        }
