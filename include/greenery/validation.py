"""Validate the built models with Great Expectations, in PostgreSQL, and summarize what failed.

Suites are reviewable JSON files, ``include/expectations/<model>.json``, in GX 1.x's own format. Each
expectation carries GX's ``severity``: ``critical`` blocks the run, ``warning`` only alerts.
``unexpected_rows_query`` texts may name other models with ``{{ ref('model') }}``; ``{batch}`` is GX's
placeholder for the table under test: it becomes ``(select ...) as subselect`` (do not alias it), except
in a query containing JOIN, where GX leaves the aliasing to the query (``{batch} as b``).

GX computes every metric in SQL against the warehouse: nothing is pulled into pandas.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from greenery import settings
from greenery.models import Model

log = logging.getLogger(__name__)

SEVERITIES = ("critical", "warning")
SAMPLE_KEYS = 5
# GX reads the connection string from this variable at run time, so its config files never hold it.
URL_ENV_VAR = "GREENERY_GX_WAREHOUSE_URL"
_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701 - SQL, not HTML


class SuiteDefinitionError(ValueError):
    """A suite file is malformed, names an unknown model, or holds an expectation GX rejects."""


@dataclass(frozen=True)
class SuiteFile:
    model: str
    path: Path
    expectations: tuple[dict, ...]


def load_suites(models: Mapping[str, Model], directory: Path | None = None) -> dict[str, SuiteFile]:
    """Read and check every suite file; each must be named after a model and declare severities."""
    directory = Path(directory or settings.EXPECTATIONS_DIR)
    suites: dict[str, SuiteFile] = {}
    for path in sorted(directory.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise SuiteDefinitionError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from exc
        name = data.get("name")
        if name != path.stem:
            raise SuiteDefinitionError(f"{path}: suite name {name!r} must equal the file name {path.stem!r}")
        if name not in models:
            raise SuiteDefinitionError(f"{path}: no model named {name!r} in include/sql")
        expectations = data.get("expectations") or []
        if not expectations:
            raise SuiteDefinitionError(f"{path}: no expectations")
        for i, exp in enumerate(expectations):
            if exp.get("severity") not in SEVERITIES:
                raise SuiteDefinitionError(
                    f"{path}: expectation {i} ({exp.get('type')}) needs severity 'critical' or 'warning'"
                )
        suites[name] = SuiteFile(name, path, tuple(expectations))
    return suites


def _resolve_refs(value: Any, relation) -> Any:
    if isinstance(value, str) and "{{" in value:
        return _ENV.from_string(value).render(ref=relation)
    if isinstance(value, dict):
        return {k: _resolve_refs(v, relation) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_refs(v, relation) for v in value]
    return value


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _sample_keys(result: Mapping[str, Any]) -> list[str]:
    rows = result.get("partial_unexpected_index_list") or []
    if not rows:
        details = result.get("details") or {}
        rows = details.get("unexpected_rows") or []
    keys = []
    for row in rows[:SAMPLE_KEYS]:
        if isinstance(row, Mapping):
            values = list(row.values())
            keys.append(str(values[0]) if len(values) == 1 else ", ".join(f"{k}={v}" for k, v in row.items()))
        else:
            keys.append(str(row))
    if not keys:
        keys = [str(v) for v in (result.get("partial_unexpected_list") or [])[:SAMPLE_KEYS]]
    return keys


def _error(result) -> str | None:
    info = result.exception_info or {}
    # One expectation may carry several metric errors keyed by metric id; any raised one counts.
    entries = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, Mapping)]
    for entry in entries:
        if entry.get("raised_exception"):
            message = str(entry.get("exception_message") or "error").strip()
            return message.split("\n[SQL:")[0][:500]
    return None


def _context(gx_dir: Path):
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="file", project_root_dir=str(gx_dir))
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def data_docs_index(gx_dir: Path) -> Path:
    return Path(gx_dir) / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"


def validate(
    sqlalchemy_url: str,
    models: Mapping[str, Model],
    suites: Mapping[str, SuiteFile],
    *,
    gx_dir: Path,
    relation: Callable[[str], str] | None = None,
    run_name: str = "adhoc",
    build_docs: bool = True,
) -> dict[str, Any]:
    """Run every suite against its model's table; return a JSON-able summary (see README).

    ``relation`` maps a model name to the table to check (default: the published one), so a
    write-audit-publish run validates its build schemas.
    """
    import great_expectations as gx

    started = time.perf_counter()
    relation = relation or (lambda name: models[name].relation)

    os.environ[URL_ENV_VAR] = sqlalchemy_url
    # The generic SQL source is deliberate: GX's Postgres source rejects socket-only (embedded) URLs.
    warnings.filterwarnings("ignore", message="You are using a generic SQLDatasource")
    context = _context(gx_dir)
    source = context.data_sources.add_or_update_sql(
        name=settings.WAREHOUSE_CONN_ID, connection_string="${" + URL_ENV_VAR + "}"
    )
    definitions = []
    for name, suite_file in suites.items():
        schema, _, table = relation(name).partition(".")
        expectations = [_resolve_refs(e, relation) for e in suite_file.expectations]
        suite = gx.ExpectationSuite(name=name, expectations=expectations, meta={"source": str(suite_file.path)})
        # GX drops an expectation it cannot parse with only a log line: refuse instead.
        if len(suite.expectations) != len(expectations):
            raise SuiteDefinitionError(
                f"{suite_file.path}: GX rejected {len(expectations) - len(suite.expectations)} expectation(s); "
                "see the log above for the reason"
            )
        suite = context.suites.add_or_update(suite)
        # One asset per model, pointed at wherever this run's table is (build schemas change per run).
        asset = next((a for a in source.assets if a.name == name), None)
        if asset is not None and (asset.schema_name, asset.table_name) != (schema, table):
            source.delete_asset(name)
            asset = None
        asset = asset or source.add_table_asset(name=name, table_name=table, schema_name=schema)
        batch = next((b for b in asset.batch_definitions if b.name == "whole_table"), None)
        batch = batch or asset.add_batch_definition_whole_table("whole_table")
        definitions.append(
            context.validation_definitions.add_or_update(gx.ValidationDefinition(name=name, data=batch, suite=suite))
        )
    from great_expectations.core.run_identifier import RunIdentifier

    run_id = RunIdentifier(run_name=run_name)
    # Run suite by suite: each needs its own primary-key columns to report sample keys of failing rows.
    # ValidationDefinition.run stores each result under run_id.
    results = {
        d.name: d.run(
            run_id=run_id,
            result_format={
                "result_format": "SUMMARY",
                "partial_unexpected_count": SAMPLE_KEYS,
                "unexpected_index_column_names": list(models[d.name].unique_key),
            },
        )
        for d in definitions
    }
    docs_path = None
    if build_docs:
        # Render this run's results only (and the index): re-rendering every stored result would make
        # each day's validation slower than the one before.
        store = context.validation_results_store
        this_run = [key for key in store.list_keys() if key.run_id.run_name == run_name]
        context.build_data_docs(resource_identifiers=this_run)
        docs_path = data_docs_index(gx_dir)
    summary = summarize(results, models, relation, _sample_fetcher(sqlalchemy_url, relation))
    summary.update(
        seconds=round(time.perf_counter() - started, 3),
        run_name=run_name,
        data_docs_path=str(docs_path) if docs_path else None,
    )
    return summary


def _sample_fetcher(sqlalchemy_url: str, relation):
    """Sample keys for a failed unexpected_rows_expectation, whose SUMMARY result carries only a count."""
    import sqlalchemy as sa

    def fetch(suite: str, query: str) -> list[str]:
        # Mirror GX's substitution: a query with a JOIN aliases {batch} itself, others get "as subselect".
        from great_expectations.expectations.metrics.query_metric_provider import _query_has_join_clause

        alias = "" if _query_has_join_clause(query) else " as subselect"
        sql = query.replace("{batch}", f"(select * from {relation(suite)}){alias}")
        engine = sa.create_engine(sqlalchemy_url, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                rows = conn.execute(sa.text(f"select * from ({sql}) as unexpected limit {SAMPLE_KEYS}")).mappings()
                return _sample_keys({"details": {"unexpected_rows": [dict(r) for r in rows]}})
        except sa.exc.SQLAlchemyError as exc:
            log.warning("could not fetch sample keys for %s: %s", suite, exc)
            return []
        finally:
            engine.dispose()

    return fetch


def summarize(results: Mapping[str, Any], models: Mapping[str, Model], relation, fetch_samples=None) -> dict[str, Any]:
    suites, failures = [], []
    for name, validation in results.items():
        counts = {"critical": 0, "warning": 0}
        for res in validation.results:
            config = res.expectation_config
            error = _error(res)
            if res.success and not error:
                continue
            severity = str(getattr(config.severity, "value", config.severity) or "critical").lower()
            counts["critical" if severity == "critical" else "warning"] += 1
            kwargs = config.kwargs
            columns = kwargs.get("column_list") or [kwargs[k] for k in ("column_A", "column_B") if kwargs.get(k)]
            column = kwargs.get("column") or (", ".join(columns) if columns else None)
            failures.append(
                {
                    "suite": name,
                    "table": relation(name),
                    "column": column,
                    "expectation": config.type,
                    "severity": severity,
                    "description": config.description or (config.meta or {}).get("description"),
                    "observed_value": _jsonable(res.result.get("observed_value")),
                    "unexpected_count": res.result.get(
                        "unexpected_count",
                        res.result.get("observed_value") if config.type == "unexpected_rows_expectation" else None,
                    ),
                    "sample_keys": (
                        fetch_samples(name, kwargs["unexpected_rows_query"])
                        if fetch_samples and config.type == "unexpected_rows_expectation" and not error
                        else _sample_keys(res.result)
                    ),
                    "error": error,
                }
            )
        suites.append(
            {
                "suite": name,
                "table": relation(name),
                "evaluated": len(validation.results),
                "failed_critical": counts["critical"],
                "failed_warning": counts["warning"],
            }
        )
    failures.sort(key=lambda f: (f["severity"] != "critical", f["table"], f["expectation"]))
    failed_critical = sum(s["failed_critical"] for s in suites)
    return {
        "evaluated": sum(s["evaluated"] for s in suites),
        "failed_critical": failed_critical,
        "failed_warning": sum(s["failed_warning"] for s in suites),
        "blocking": failed_critical > 0,
        "suites": suites,
        "failures": failures,
    }
