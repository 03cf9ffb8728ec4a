"""Task ``validate``: run every model's suite on what this run built, in PostgreSQL.

Its summary goes to XCom (key ``summary``) and, when a critical check failed, to the audit table; then
the task fails, named for what failed: the red box in the Airflow UI says which checks and what to do,
and ``publish`` does not run. GX writes its results and Data Docs into a temporary folder of this run only,
and the task stores the pages in the warehouse (``greenery_audit.data_docs``, with the validation's record
when it writes one): whichever worker ran it, the Data quality view finds them, and no file stays behind.
Re-running it alone is refused when raw changed since the run's build (the tables would mix old and new
data): after fixing raw, clear the whole run.
"""

from __future__ import annotations

import gc
import logging
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from psycopg import sql

from greenery import audit, build_schemas, config, docs, gc_tuning, links, publish_checks, runtime, wap, warehouse
from greenery.checks import docs_pages, history, root_causes
from greenery.checks import suites as suite_files
from greenery.materialize import relations
from greenery.printable import printable
from greenery.project import models as model_files
from greenery.tasks.failures import AlertFollows

log = logging.getLogger(__name__)

MAX_FAILURES_IN_SUMMARY = 100
SUMMARY_KEY = "summary"


class NothingToValidateError(RuntimeError):
    """The run has no built model to check (its build was lost or never happened)."""


class RawChangedError(RuntimeError):
    """Raw changed after the run prepared its build: its tables mix old and new data. Nothing to fix (user trial: its
    page said "Fix the cause"): the run rebuilds from raw as it is now."""

    @property
    def next_step(self) -> str:
        return links.rebuild_from_raw()


class ChecksFailed(AlertFollows):
    """Critical expectations failed: nothing is published; alert_slack pages on-call with them."""


def data_docs_url(pages: int) -> str | None:
    """The Data Docs as the plugin serves them (behind the Airflow login, sandboxed), never a file:// path."""
    return links.docs_url() if pages else None


def quarantined_counts(conn, models, build: wap.Build, names: list[str]) -> dict[str, int]:
    """Rows this run held back, per model it built (its build's quarantine tables)."""
    held = _by_rule(conn, {name: wap.built_quarantine(conn, models[name], build) for name in names})
    return _totals(held)


def _totals(held: dict[str, dict[str, int]]) -> dict[str, int]:
    return {name: sum(rules.values()) for name, rules in held.items()}


def _by_rule(conn, tables: dict[str, str | None]) -> dict[str, dict[str, int]]:
    """Rows held back per model by the rule each broke (its quarantine table's ``rule``), most rows first: on-call
    reads why, not only how many (stop 73's trial: counted by table only, in the alert and the view)."""
    held = {}
    for name, table in tables.items():
        if table is None:
            continue
        by_rule = sql.SQL("select rule, count(*) from {} group by rule order by count(*) desc, rule")
        if rows := conn.execute(by_rule.format(relations.ident(table))).fetchall():
            held[name] = {str(rule): n for rule, n in rows}
    return held


def _check_raw_unchanged(conn, build: wap.Build) -> None:
    if changed := publish_checks.raw_changed(conn, build):
        again = links.run_again(links.CLEAR_THE_RUN)
        raise RawChangedError(f"{changed}: its tables would mix old and new data. To rebuild from raw, {again}.")


def run(context: Any) -> dict[str, Any]:
    # What the task's process started with: greenery-airflow's thresholds where the scheduler or a Celery worker that
    # it started forked the task (preloaded_airflow.py; the stack tests read this line), CPython's elsewhere.
    log.info("Python's collector thresholds when the task started: %s", gc.get_threshold())
    # GX's import and validation make millions of short-lived objects: the collector runs less (gc_tuning.py), also
    # where the task runs in a process this project did not start (`airflow dags test`, a caller's dag.test).
    with gc_tuning.fewer_collections():
        return _validate(context)


def _to_check(suites: dict, built: list[str]) -> list[str]:
    """The suites of the models this run built, and of every model whose checks read one of them (diff review: a
    cleared dim_users published without fact_orders' check that every order's user is in it). The others check
    published tables this run does not change."""
    rebuilt = set(built)
    return [
        name
        for name, suite in suites.items()
        if name in rebuilt or (reads := suite_files.models_read(suite)) is None or reads & rebuilt
    ]


def _validate(context: Any) -> dict[str, Any]:
    preloaded = "great_expectations" in sys.modules
    started = time.perf_counter()
    from greenery.checks import gx  # Great Expectations: 3-4 s to import, only in this task

    # Preloaded by the scheduler before it forked this task (greenery/preloaded_airflow.py), or imported by
    # prepare_build earlier in this process (a dag.test run: `greenery run`).
    if preloaded:
        log.info("Great Expectations: already imported when the task started")
    else:
        log.info("Great Expectations: imported in %.1fs", time.perf_counter() - started)

    found = model_files.discover()
    suites = suite_files.load_complete(found)  # prepare_build checked it too, before anything was built
    interval = runtime.interval(context)
    this_run = runtime.build(context)
    with warehouse.connect() as conn:
        _check_raw_unchanged(conn, this_run)
        build_schemas.touch(conn, this_run.key)  # a validation is work on the build: not idle while it lasts
        # A cleared single task rebuilds only some models: validate what this run built.
        built = wap.built_models(conn, found, this_run)
        built_at = wap.built_times(conn, this_run)  # what a pass vouches for: publish refuses any later build
        # A snapshot whose history this run kept is the published table as it was (checked when it was published):
        # checked against this run's models it would fail on any order gone from raw since its latest step.
        kept = publish_checks.kept_snapshots(conn, found, this_run, built)
        if kept:
            log.info("not checked again: %s (history kept: the run's day is before the latest step)", sorted(kept))
        if not built:
            raise NothingToValidateError(
                f"run {context['run_id']!r} has no built model in {this_run.key}__* to validate:"
                f" {links.run_again('clear the whole run')}"
            )
        relation = relations.resolver(conn, found, this_run.schema_of)
        deltas = {name: wap.built_delta(conn, found[name], this_run) for name in built}
        tables = {name: deltas.get(name) or relation(name) for name in found}
        refs = {name: relation(name) for name in found}  # whole models (an incremental one's merged view)
        # A daily model's history is its published table; before the first publish, only this run's day.
        published = {
            name: m.relation if relations.exists(conn, m.relation) else refs[name] for name, m in found.items()
        }
        quarantine_tables = {name: wap.built_quarantine(conn, found[name], this_run) for name in built}
        quarantined_rules = _by_rule(conn, quarantine_tables)
        quarantined = _totals(quarantined_rules)
        # What the suites' {{ quarantined('m') }} reads: this run's quarantine (a critical check blocks a source
        # mostly quarantined, or a key both kept and quarantined: either is a broken extract, not bad rows).
        # Every quarantining model's, built in this run or not: a mart's suite reads its staging's too (fact_orders).
        held = {
            name: quarantine_tables.get(name) or suite_files.nothing_quarantined(refs[name])
            for name, model in found.items()
            if model.config.get("quarantine")
        }
        on_delta = {name for name, delta in deltas.items() if delta}
        seconds_before = history.suite_seconds(conn, on_delta)
    settings = config.get()
    with tempfile.TemporaryDirectory(prefix="greenery-gx-") as gx_dir:
        summary = gx.validate(
            warehouse.sqlalchemy_url(settings.warehouse_conn_id),
            found,
            {name: suites[name] for name in _to_check(suites, built) if name not in kept},
            gx_dir=Path(gx_dir),
            relation=tables.__getitem__,
            run_name=context["run_id"],
            refs=refs.__getitem__,
            variables={
                **suite_files.run_variables(found, interval.day, full_refresh=runtime.full_refresh(context)),
                "published": published.__getitem__,
                "quarantined": held.__getitem__,
            },
            connections=settings.validation_connections,
            seconds_before=seconds_before,
        )
        pages = docs_pages.collect(Path(gx_dir))
    for suite in summary["suites"]:  # whose seconds a later validation may balance on (history.suite_seconds)
        suite["on_delta"] = suite["suite"] in on_delta
    summary["root_causes"] = [
        {**cause, "owner": (docs.owner_of(cause["model"]) or {}).get("name")}
        for cause in root_causes.group(summary["failures"], found)
    ]
    total_failures = len(summary["failures"])
    summary["failures"] = summary["failures"][:MAX_FAILURES_IN_SUMMARY]  # XCom stays small
    summary.update(
        dag_id=runtime.dag_id(context),
        run_id=context["run_id"],
        logical_date=interval.day.isoformat(),
        failures_total=total_failures,
        quarantined=quarantined,
        quarantined_rules=quarantined_rules,
        log_url=runtime.log_url(context),
        try_number=getattr(context.get("ti"), "try_number", None),  # the alert's log link opens this try's
        validation_id=uuid.uuid4().hex,
        # Which attempt of the run validated (Airflow's count of its clears): a summary left in XCom by an earlier
        # attempt is not this one's (notify.send_alert).
        clear_number=runtime.clear_number(context),
        kept_unchecked=sorted(kept),  # snapshots whose published history this run kept, checked when published
        data_docs_pages=len(pages),
        data_docs_url=data_docs_url(len(pages)),
    )
    with warehouse.connect() as conn:
        history.annotate(conn, summary)
        audit.ensure(conn)
        with conn.transaction():
            audit.record_data_docs(conn, summary["validation_id"], context["run_id"], pages)
            if summary["blocking"]:
                audit.record_validation(conn, summary, published=False)
            else:
                wap.record_validated(conn, this_run, {name: built_at[name] for name in built})
    log_summary(summary)
    context["ti"].xcom_push(key=SUMMARY_KEY, value=summary)
    if summary["blocking"]:
        raise ChecksFailed(verdict(summary))
    return summary


SHOWN_CAUSES, SHOWN_KEYS = 5, 3  # the failed task's message stays readable in the Grid and on a Slack page


def _cut(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


def verdict(summary: dict[str, Any]) -> str:
    """The failed task's message: what failed at the root, and what to do."""
    critical = [r for r in summary["root_causes"] if r["severity"] == "critical"]
    unevaluated = bool(critical) and all(r.get("error") for r in critical)  # their queries failed, not the data
    what = "check(s) could not be evaluated" if unevaluated else "problem(s) in the data"
    lines = [f"{len(critical)} critical {what}; nothing was published:"]
    for r in critical[:SHOWN_CAUSES]:
        shown = r["keys"][:SHOWN_KEYS]
        # A key is raw data: a newline in it would forge a line of its own where the message is shown (user trial).
        keys = ", ".join(printable(k["key"]) + (f" x{k['count']}" if k["count"] > 1 else "") for k in shown)
        # Review: a cut list read as a complete one; say what is left (the log and the view have it all).
        if keys and (more := (r.get("unexpected_count") or 0) - sum(k["count"] for k in shown)) > 0:
            keys += f" (and {more} more rows)"
        sources = f" (from {', '.join(r['sources'])})" if r["sources"] else ""
        # A query check has no column: its description says which (developer's trial: three such checks, one broken)
        described = f" ({_cut(str(r['description']), 120)})" if r.get("description") else ""
        column = f"({r['column']})" if r.get("column") else described
        also = f"; also fails in {', '.join(r['also_fails_in'])}" if r["also_fails_in"] else ""
        if r.get("downstream_of"):
            also += f"; reads {', '.join(r['downstream_of'])}, failing above: it may follow from that"
        if r.get("error"):  # no rows to name: the check's own query failed
            keys = "could not be evaluated: " + " ".join(str(r["error"]).split())[:300]
        elif not keys and r.get("detail_error"):  # it failed, but the rows could not be read
            keys = "keys could not be read: " + " ".join(str(r["detail_error"]).split())[:300]
        lines.append(f"- {r['table']}{sources}: {r['expectation']}{column}{': ' + keys if keys else ''}{also}")
    if len(critical) > SHOWN_CAUSES:
        lines.append(
            f"- and {len(critical) - SHOWN_CAUSES} more: the task log (FAILED lines) and the Data quality view list all"
        )
    lines.append(f"{root_causes.what_to_fix(critical)}, then {links.run_again(links.CLEAR_THE_RUN)}.")
    return "\n".join(lines)


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
    for r in summary["root_causes"]:
        log.warning(
            "FAILED [%s] %s%s %s%s: observed=%s unexpected=%s keys=%s%s%s%s",
            r["severity"],
            r["table"],
            f" (from {', '.join(r['sources'])})" if r["sources"] else "",
            r["expectation"],
            f" ({r['column']})" if r["column"] else "",
            r["observed_value"],
            r["unexpected_count"],
            [f"{k['key']} x{k['count']}" if k["count"] > 1 else k["key"] for k in r["keys"]],
            f"; also fails in {', '.join(r['also_fails_in'])}" if r["also_fails_in"] else "",
            f"; failing since {r['failing_since']} ({r['runs_failing']} runs)" if r.get("runs_failing", 1) > 1 else "",
            f"; keys could not be read: {r['detail_error']}" if r.get("detail_error") else "",
        )
