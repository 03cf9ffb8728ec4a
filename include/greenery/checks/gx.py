"""Validate the built models with Great Expectations, in PostgreSQL, and summarize what failed.

Suites are reviewable JSON files, ``include/expectations/<model>.json``, in GX 1.x's own format. Each
expectation carries GX's ``severity``: ``critical`` blocks the run, ``warning`` only alerts.
``unexpected_rows_query`` texts may name other models with ``{{ ref('model') }}``; ``{batch}`` is GX's
placeholder for the table under test: it becomes ``(select ...) as subselect`` (do not alias it), except
in a query containing JOIN, where GX leaves the aliasing to the query (``{batch} as b``).

GX computes every metric in SQL against the warehouse: nothing is pulled into pandas.
"""

from __future__ import annotations

import functools
import logging
import os
import time
import uuid
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from greenery import config
from greenery.checks.paths import data_docs_index
from greenery.checks.suites import SuiteDefinitionError, SuiteFile, resolve_refs
from greenery.checks.summary import SAMPLE_KEYS, _error, _sample_keys, summarize
from greenery.project.models import Model

log = logging.getLogger(__name__)

# GX reads the connection string from this variable at run time, so its config files never hold it.
URL_ENV_VAR = "GREENERY_GX_WAREHOUSE_URL"


def _context(gx_dir: Path):
    """The file context under ``gx_dir``: it stores the validation results and renders the Data Docs."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="file", project_root_dir=str(gx_dir))
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def _runner(sqlalchemy_url: str):
    """An ephemeral context holding the warehouse source and one table asset per model.

    In the file context every asset added rewrites great_expectations.yml, and a write-audit-publish run
    points every asset at new build schemas: about 40 rewrites of the file per run for nothing kept.
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    os.environ[URL_ENV_VAR] = sqlalchemy_url
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    # The generic SQL source is deliberate: GX's Postgres source rejects socket-only (embedded) URLs.
    warnings.filterwarnings("ignore", message="You are using a generic SQLDatasource")
    # GX reads the URL from the environment, so no config or log of it holds the password.
    return context.data_sources.add_sql(name=config.get().warehouse_conn_id, connection_string="${" + URL_ENV_VAR + "}")


# Every suite runs in two passes. The first asks GX only for success (BOOLEAN_ONLY): then a map
# expectation costs its unexpected count, bundled with the others of its table into one query. SUMMARY
# would add, per map expectation, queries for the unexpected values and the unexpected index list: each
# a scan of the table even when nothing fails. The second pass runs in SUMMARY only the expectations
# that did not pass (for their observed values and sample keys), together with those for which SUMMARY
# costs no query more (table- and query-level ones), so their results keep their observed values.
CHEAP_RESULT_FORMAT = "BOOLEAN_ONLY"
UNEXPECTED_ROWS = "unexpected_rows_expectation"
_COSTLIER_IN_DETAIL: dict[type, bool] = {}


def _detailed_format(model: Model) -> dict[str, Any]:
    return {
        "result_format": "SUMMARY",
        "partial_unexpected_count": SAMPLE_KEYS,
        "unexpected_index_column_names": list(model.unique_key),
    }


def _costlier_in_detail(expectation) -> bool:
    """Whether GX computes more metrics for ``expectation`` in SUMMARY than in BOOLEAN_ONLY (per class)."""
    kind = type(expectation)
    if kind not in _COSTLIER_IN_DETAIL:
        try:
            cheap, detailed = (
                set(expectation.get_validation_dependencies(None, {"result_format": fmt}).get_metric_names())
                for fmt in ({"result_format": CHEAP_RESULT_FORMAT}, {"result_format": "SUMMARY"})
            )
            _COSTLIER_IN_DETAIL[kind] = bool(detailed - cheap)
        except Exception:  # cannot tell without an engine: run it in SUMMARY at once
            _COSTLIER_IN_DETAIL[kind] = False
    return _COSTLIER_IN_DETAIL[kind]


@functools.cache
def _counted_rows_type() -> str:
    """The type of an unexpected_rows_expectation that only counts the rows its query returns.

    GX's own also fetches those rows (metric ``unexpected_rows_query.table``): a second execution of the
    query, whose rows only the COMPLETE format reports. summarize() fetches a failure's sample keys itself.
    """
    from great_expectations.expectations import UnexpectedRowsExpectation

    class GreeneryCountedUnexpectedRows(UnexpectedRowsExpectation):  # registered with GX by its metaclass
        metric_dependencies: ClassVar[tuple[str, ...]] = ("unexpected_rows_query.row_count",)

        def _validate(self, metrics, runtime_configuration=None, execution_engine=None):
            # What UnexpectedRowsExpectation returns in BASIC and SUMMARY.
            count = metrics["unexpected_rows_query.row_count"]
            return {"success": count == 0, "result": {"observed_value": count}}

    return GreeneryCountedUnexpectedRows.expectation_type


def _as_type(config, type_: str):
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    return ExpectationConfiguration(
        type=type_,
        kwargs=config.kwargs,
        meta=config.meta,
        notes=config.notes,
        description=config.description,
        severity=config.severity,
        id=config.id,
        rendered_content=config.rendered_content,
    )


def _passed(result) -> bool:
    return bool(result.success) and _error(result) is None


def run_suite(batch, suite, detailed: dict[str, Any]):
    """Validate ``suite`` on ``batch`` in two passes; return one result with every expectation, in order.

    Every expectation that did not pass, and every one whose SUMMARY costs nothing more, carries its
    SUMMARY result: what a single SUMMARY run gives. The others (passed map expectations) carry the
    first pass's BOOLEAN_ONLY result: success, no observed value.
    """
    import great_expectations as gx
    from great_expectations.core.expectation_validation_result import ExpectationSuiteValidationResult
    from great_expectations.validator.v1_validator import Validator
    from great_expectations.validator.validator import calc_validation_statistics

    configs = suite.expectation_configurations  # the suite's expectations carry ids: results map back by id
    costly = {c.id for e, c in zip(suite.expectations, configs, strict=True) if _costlier_in_detail(e)}
    counted = _counted_rows_type()
    validator = Validator(batch_definition=batch, result_format=CHEAP_RESULT_FORMAT)
    results: dict[str, Any] = {}
    last = None

    def run(batch_configs, result_format) -> None:
        nonlocal last
        validator.result_format = result_format
        last = validator.validate_expectation_suite(gx.ExpectationSuite(name=suite.name, expectations=batch_configs))
        results.update((r.expectation_config.id, r) for r in last.results)

    if costly:
        run([c for c in configs if c.id in costly], CHEAP_RESULT_FORMAT)
    second = [
        c if c.id in costly else _as_type(c, counted) if c.type == UNEXPECTED_ROWS else c
        for c in configs
        if c.id not in costly or not _passed(results[c.id])
    ]
    if second:
        run(second, detailed)
    ordered = []
    for expectation in configs:
        result = results[expectation.id]
        if result.expectation_config.type == counted:
            result.expectation_config = _as_type(result.expectation_config, UNEXPECTED_ROWS)
        ordered.append(result)
    stats = calc_validation_statistics(ordered)
    return ExpectationSuiteValidationResult(
        success=stats.success,
        results=ordered,
        suite_name=suite.name,
        statistics={
            "evaluated_expectations": stats.evaluated_expectations,
            "successful_expectations": stats.successful_expectations,
            "unsuccessful_expectations": stats.unsuccessful_expectations,
            "success_percent": stats.success_percent,
        },
        meta=dict(last.meta),
        batch_id=last.batch_id,
    )


def _suite(name: str, suite_file: SuiteFile, relation):
    import great_expectations as gx

    expectations = [{**resolve_refs(e, relation), "id": str(uuid.uuid4())} for e in suite_file.expectations]
    suite = gx.ExpectationSuite(name=name, expectations=expectations, meta={"source": str(suite_file.path)})
    # GX drops an expectation it cannot parse with only a log line: refuse instead.
    if len(suite.expectations) != len(expectations):
        raise SuiteDefinitionError(
            f"{suite_file.path}: GX rejected {len(expectations) - len(suite.expectations)} expectation(s); "
            "see the log above for the reason"
        )
    return suite


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
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    started = time.perf_counter()
    relation = relation or (lambda name: models[name].relation)
    # Every suite is checked before any runs: a malformed one fails the task at once.
    planned = {name: _suite(name, suite_file, relation) for name, suite_file in suites.items()}
    source = _runner(sqlalchemy_url)
    context = _context(gx_dir)
    run_id = RunIdentifier(run_name=run_name)
    results, keys = {}, []
    try:
        for name, suite in planned.items():
            schema, _, table = relation(name).partition(".")
            asset = source.add_table_asset(name=name, table_name=table, schema_name=schema)
            batch = asset.add_batch_definition_whole_table("whole_table")
            result = run_suite(batch, suite, _detailed_format(models[name]))
            # What ValidationDefinition.run records; the results land in the file context's store.
            result.meta.update(
                run_id=run_id, validation_time=run_id.run_time, checkpoint_id=None, batch_parameters=None
            )
            key = ValidationResultIdentifier(
                expectation_suite_identifier=ExpectationSuiteIdentifier(name=name),
                run_id=run_id,
                batch_identifier=result.batch_id,
            )
            context.validation_results_store.set(key, result)
            results[name] = result
            keys.append(key)
    finally:
        source.get_engine().dispose()
    docs_path = None
    if build_docs:
        # Render this run's results only (and the index): re-rendering every stored result would make
        # each day's validation slower than the one before.
        context.build_data_docs(resource_identifiers=keys)
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
