"""Task ``validate``: run every model's suite on what this run built, in PostgreSQL; return the summary."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from psycopg import sql

from greenery import config, runtime, wap, warehouse
from greenery.checks import suites as suite_files
from greenery.materialize import relations
from greenery.project import models as model_files

log = logging.getLogger(__name__)

MAX_FAILURES_IN_SUMMARY = 100


class NothingToValidateError(RuntimeError):
    """The run has no built model to check (its build was lost or never happened)."""


def data_docs_url(index: str | None) -> str | None:
    if not index:
        return None
    base = config.get().data_docs_base_url
    return f"{base.rstrip('/')}/index.html" if base else Path(index).as_uri()


def quarantined_counts(conn, models, build: wap.Build, names: list[str]) -> dict[str, int]:
    """Rows this run held back, per model it built (its build's quarantine tables)."""
    counts = {}
    for name in names:
        table = wap.built_quarantine(conn, models[name], build)
        if table is None:
            continue
        n = conn.execute(sql.SQL("select count(*) from {}").format(relations.ident(table))).fetchone()[0]
        if n:
            counts[name] = n
    return counts


def run(context: Any) -> dict[str, Any]:
    from greenery.checks import gx  # Great Expectations: ~2 s to import, only in this task

    found = model_files.discover()
    suites = suite_files.load_suites(found)
    missing = sorted(set(found) - set(suites))
    if missing:
        raise suite_files.SuiteDefinitionError(f"models without a suite in include/expectations: {missing}")
    interval = runtime.interval(context)
    this_run = runtime.build(context)
    with warehouse.connect() as conn:
        # A cleared single task rebuilds only some models: validate what this run built.
        built = wap.built_models(conn, found, this_run)
        if not built:
            raise NothingToValidateError(
                f"run {context['run_id']!r} has no built model in {this_run.key}__* to validate: clear the whole run"
            )
        relation = relations.resolver(conn, found, this_run.schema_of)
        deltas = {name: wap.built_delta(conn, found[name], this_run) for name in built}
        tables = {name: deltas.get(name) or relation(name) for name in found}
        quarantined = quarantined_counts(conn, found, this_run, built)
    settings = config.get()
    summary = gx.validate(
        warehouse.sqlalchemy_url(settings.warehouse_conn_id),
        found,
        {name: suites[name] for name in built},
        gx_dir=settings.gx_dir,
        relation=tables.__getitem__,
        run_name=context["run_id"],
    )
    total_failures = len(summary["failures"])
    summary["failures"] = summary["failures"][:MAX_FAILURES_IN_SUMMARY]  # XCom stays small
    summary.update(
        dag_id=runtime.dag_id(context),
        run_id=context["run_id"],
        logical_date=interval.day.isoformat(),
        failures_total=total_failures,
        quarantined=quarantined,
        log_url=runtime.log_url(context),
        data_docs_url=data_docs_url(summary.get("data_docs_path")),
    )
    log_summary(summary)
    return summary


def log_summary(summary: dict[str, Any]) -> None:
    log.info(
        "validation: %d expectations, %d critical failures, %d warnings in %.1fs",
        summary["evaluated"],
        summary["failed_critical"],
        summary["failed_warning"],
        summary.get("seconds", 0),
    )
    for suite in summary["suites"]:
        log.info(
            "  %-45s evaluated %3d  critical %2d  warning %2d",
            suite["table"],
            suite["evaluated"],
            suite["failed_critical"],
            suite["failed_warning"],
        )
    for f in summary["failures"]:
        log.warning(
            "FAILED [%s] %s %s%s: observed=%s unexpected=%s sample=%s%s",
            f["severity"],
            f["table"],
            f["expectation"],
            f" ({f['column']})" if f["column"] else "",
            f["observed_value"],
            f["unexpected_count"],
            f["sample_keys"],
            f" error={f['error']}" if f["error"] else "",
        )
