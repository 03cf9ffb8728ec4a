"""Tasks ``prepare_build`` and the model tasks: fresh build schemas for the run, then one model each."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from greenery import audit, config, docs, gc_tuning, publish_grants, runtime, wap, warehouse
from greenery.checks import suites as suite_files
from greenery.materialize.build import build_model
from greenery.project import models as model_files
from greenery.project.models import Model
from greenery.sources import fingerprint

log = logging.getLogger(__name__)


class RunNotPreparedError(RuntimeError):
    """A model task ran for a run whose build was never prepared (its first task did not run)."""


def prepare(context: Any) -> dict[str, Any]:
    """Empty build schemas for the run, registered with the run's clock (kept when the run is cleared). The suites
    are read first: a malformed or missing one (GREENERY_EXPECTATIONS_DIR pointing nowhere) fails the run here, not
    in validate after every model was built (review), and so does one GX cannot read, every file's problems at once
    (user trial: a misspelt key failed validate, naming no file, one file per run)."""
    found = model_files.discover()
    suites = suite_files.load_complete(found)  # without GX: a malformed file is named at once
    docs.check(found)  # review: a _docs.yml entry of the wrong shape failed its model's task, retried, 338 s
    with gc_tuning.fewer_collections():  # GX's import makes millions of objects (validate does the same)
        from greenery.checks import gx_suites  # GX: imported by the task, never when the DAG is parsed

        gx_suites.check_readable(suites)
    build = runtime.build(context)
    with warehouse.connect() as conn:
        publish_grants.require(conn, _published(found), runtime.full_refresh(context))
        raw = _raw_as_checked(context) or fingerprint.fingerprint(conn)
        run_time = wap.prepare(conn, build, dt.datetime.now(dt.UTC), raw)
    log.info("build schemas ready: %s (run clock %s)", ", ".join(build.schema_of.values()), run_time.isoformat())
    return {"build": build.key, "run_time": run_time.isoformat()}


def _raw_as_checked(context: Any) -> dict | None:
    """Raw's fingerprint as check_source_freshness took it, before its check (None: no such result, as where its task
    was not run in this context): what validate and publish compare raw with, so that a change during the check or
    between the two tasks is seen (review: the day's events deleted between them, the run published the day empty).
    Cleared from here on after raw changed, the run is refused by validate: clear it whole, so the check sees raw."""
    checked = context["ti"].xcom_pull(task_ids="check_source_freshness") if context.get("ti") else None
    return checked.get(fingerprint.AS_CHECKED) if isinstance(checked, dict) else None


def _published(models: dict[str, Model]) -> dict[str, list[str]]:
    """Each schema's tables a publish replaces or writes to: the models', their quarantine tables, audit's own."""
    published: dict[str, list[str]] = {layer: [] for layer in config.LAYERS}
    published[config.QUARANTINE_SCHEMA], published[audit.SCHEMA] = [], list(audit.TABLES)
    for model in models.values():
        published[model.layer].append(model.name)
        if model.config.get("quarantine"):
            published[config.QUARANTINE_SCHEMA].append(model.name)
    return published


def build_one(context: Any, model: Model, models: dict[str, Model], conn_id: str) -> dict[str, Any]:
    """Build ``model`` into the run's build schema and list it there, in one transaction."""
    build = runtime.build(context)
    with warehouse.connect(conn_id) as conn:
        run_time = wap.recorded_clock(conn, build)  # autocommit: no transaction stays open
        if run_time is None:
            raise RunNotPreparedError(
                f"run {context['run_id']!r} has no registered build ({build.key}): clear the whole run so that"
                " prepare_build runs first"
            )
        with conn.transaction():
            result = build_model(
                conn,
                model,
                models,
                runtime.interval(context),
                build.schema_of,
                run_id=context["run_id"],
                full_refresh=runtime.full_refresh(context),
                run_time=run_time,
            )
            wap.record_built(conn, build, model.name, result.info)
    return {
        "relation": result.relation,
        "rows": result.rows,
        "quarantined": result.quarantined,
        "incremental": result.incremental,
        "seconds": round(result.seconds, 3),
    }
