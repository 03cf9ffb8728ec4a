"""Validate the built models with Great Expectations, through its public API only, in PostgreSQL.

Suites are the files of include/expectations (checks/suites.py). ``unexpected_rows_query`` texts may name other models
with ``{{ ref('model') }}``; ``{batch}`` is GX's placeholder for the table under test: it becomes ``(select ...) as
subselect`` (do not alias it). GX computes every metric in SQL against the warehouse: nothing is pulled into pandas.
With checks/gx_suites.py (suite files as GX reads them), the only modules that import GX: it hands summary.py
each result as plain data (GX's JSON form).

Two passes, for speed (tests/test_validation_passes.py counts the statements):

1. Every suite of the run through its ValidationDefinition, in BASIC with ``partial_unexpected_count`` 0. GX bundles the
   unexpected counts of a table's map expectations into a few aggregate queries; the unexpected-value query it adds
   per map expectation carries ``LIMIT 0``, which PostgreSQL plans but does not execute (at scale 100: 125 such
   statements, 0.1 s in all). The results, stored under ``gx_dir`` and rendered in the Data Docs, carry counts and
   percentages but no row values. ``gx_dir`` is a fresh folder per validation (the validate task's temporary one,
   stored in the warehouse afterwards: checks/docs_pages.py), and GX's index is not built: it re-reads every result
   in the folder (the view lists the runs itself). SUMMARY would send the same SQL and cost about 0.8 s more CPU for
   21 suites (GX then also builds an unexpected-index query per map expectation).
2. Only the expectations that failed, again, through ``Batch.validate`` (nothing stored), right after the suite's
   pass 1 on the same connection: map expectations in SUMMARY with a few unexpected values and the model's unique key
   as index columns (the sample keys), an ``unexpected_rows_expectation`` in COMPLETE (GX then returns its query's
   rows). Asking that detail of every expectation in one pass would scan each table once more per map expectation,
   even when nothing fails.

What the public API costs: GX's UnexpectedRowsExpectation runs its query twice in any result format (counted, then
fetched). Each query check's rows are found once, before the suite runs, into a temporary table of the stream's
session that GX's expectation then reads (checks/query_rows.py): the relationship and reconciliation queries run
once per validation, not twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import great_expectations as gx
import psycopg
import sqlalchemy as sa
from great_expectations import exceptions as gx_exceptions
from great_expectations.data_context.types.base import DataContextConfig, ProgressBarsConfig

from greenery import locks, warehouse
from greenery.checks import gx_logs, gx_suites, paths, query_rows, streams
from greenery.checks.suites import SuiteFile, resolve_refs, run_variables
from greenery.checks.summary import DETAIL_ERROR, SAMPLE_KEYS, UNEXPECTED_ROWS, error, failed, summarize
from greenery.project.models import Model

log = logging.getLogger(__name__)

SCREEN = {"result_format": "BASIC", "partial_unexpected_count": 0}
SOURCE = "warehouse"


def _context(gx_dir: Path):
    """An ephemeral context whose validation results and Data Docs are files under ``gx_dir`` (this run's only).

    Suites and validation definitions stay in memory (no Checkpoint: see _run): each run makes them anew, pointing
    at its own build schemas, so two runs validating at once cannot overwrite each other's. Data sources always stay
    in memory in an ephemeral context: no file ever holds the connection.
    """

    def store(class_name: str, directory: Path | None = None) -> dict:
        backend = {"class_name": "InMemoryStoreBackend"}
        if directory is not None:
            backend = {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(directory)}
        return {"class_name": class_name, "store_backend": backend}

    config = DataContextConfig(
        stores={
            "expectations_store": store("ExpectationsStore"),
            "validation_definition_store": store("ValidationDefinitionStore"),
            "validation_results_store": store("ValidationResultsStore", paths.validation_results_dir(gx_dir)),
        },
        expectations_store_name="expectations_store",
        validation_results_store_name="validation_results_store",
        data_docs_sites={
            "local_site": {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(paths.data_docs_index(gx_dir).parent),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                # Only the validation pages are kept (checks/docs_pages.py): GX's suite pages ("expectations") were
                # rendered and thrown away, about 0.8 s of CPU per validation; "profiling" has nothing to render.
                "site_section_builders": {"expectations": "0", "profiling": "0"},
            }
        },
        progress_bars=ProgressBarsConfig(globally=False),
        analytics_enabled=False,
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def _connect_args(sqlalchemy_url: str) -> dict[str, Any]:
    url = sa.engine.make_url(sqlalchemy_url)
    args = {**url.translate_connect_args(username="user", database="dbname"), **dict(url.query)}
    # The checks see dates and hours in UTC, as the builds made them, whatever the database's TimeZone (an
    # incremental model's merged view compares its date column with the window's start in the session's zone).
    return {**args, "options": f"{args.get('options', '')} -c TimeZone=UTC".strip()}


WHOLE_TABLE = "whole_table"


def _assets(tables: Mapping[str, str]) -> list[dict[str, Any]]:
    """GX table assets (as data source config) for ``tables`` (name -> schema.table), each with a whole-table
    batch definition."""
    assets = []
    for name, relation in tables.items():
        schema, _, table = relation.partition(".")
        batches = [{"name": WHOLE_TABLE}]
        assets.append(
            {"name": name, "type": "table", "table_name": table, "schema_name": schema, "batch_definitions": batches}
        )
    return assets


class _NumericAsFloat(psycopg.adapt.Loader):
    """``numeric`` as the float GX makes of a Decimal (inf beyond 1.8e308, where psycopg's FloatLoader raises): GX
    converts each Decimal it serializes with a walk of the call stack (inspect.stack()), 9-18 ms a value, which a
    red run's sample values paid. Decisions are made in SQL or on whole counts, exact as floats below 2**53."""

    def load(self, data) -> float:
        return float(bytes(data))


IDLE_TIMEOUTS_OFF = (
    "select set_config('idle_session_timeout', '0', false), set_config('idle_in_transaction_session_timeout', '0',"
    " false)"
)


@contextlib.contextmanager
def _sources(
    context, connect_args: Mapping[str, Any], tables: list[Mapping[str, str]]
) -> Iterator[list[tuple[Any, psycopg.Connection]]]:
    """The warehouse as one GX data source per entry of ``tables`` (name -> schema.table: its table assets),
    each with the one connection of ours it runs on.

    GX gets the SQLAlchemy dialect and a connection factory, not the URL: it never holds the password, and the
    connections are closed here when validation ends (GX's own pool would keep them until garbage collection).
    The assets come with the data source, not one ``add_table_asset`` at a time: GX re-serializes the whole
    project config (every data source and asset, as YAML) on each add, 58 times for 29 suites (0.3-0.5 s).
    """
    with contextlib.ExitStack() as stack:
        sources = []
        for stream, stream_tables in enumerate(tables):
            # Autocommit: GX opens a SQLAlchemy connection per query, each was a BEGIN and a ROLLBACK (READ COMMITTED
            # either way). The real data's validation, alternating: 5.95 CPU-s against 6.89 (medians of 5, 2026-12-03).
            conn = stack.enter_context(psycopg.connect(**connect_args, autocommit=True))
            conn.adapters.register_loader("numeric", _NumericAsFloat)
            warehouse.end_statements_of_gone_clients(conn)  # a stopped task's query ends with it
            # A stream's connection idles while GX's Python runs (in this thread or another's; pass 2 once waited for
            # every stream's pass 1): a role's or database's idle timeout ended it, a failure's rows lost (diff
            # review; the lock session does the same).
            conn.execute(IDLE_TIMEOUTS_OFF)
            with warnings.catch_warnings():
                # Generic on purpose: GX's Postgres source rejects socket-only (embedded server) URLs.
                warnings.filterwarnings("ignore", message="You are using a generic SQLDatasource")
                source = context.data_sources.add_sql(
                    name=SOURCE if stream == 0 else f"{SOURCE}_{stream + 1}",
                    connection_string="postgresql+psycopg://",
                    kwargs={"creator": lambda conn=conn: conn, "poolclass": sa.pool.StaticPool},
                    assets=_assets(stream_tables),
                )
            sources.append((source, conn))
        yield sources


def _planned(suites: Mapping[str, SuiteFile], refs, variables) -> tuple[dict[str, dict], dict[str, Any]]:
    """Each suite's data rendered for this run, and GX's suite of it: every suite is read before any runs, so a
    malformed one fails the task at once (a stream reads its suite again, its query checks reading kept rows)."""
    rendered = {name: resolve_refs(suite_file.data, refs, variables) for name, suite_file in suites.items()}
    return rendered, {name: gx_suites.read(suites[name].path, data) for name, data in rendered.items()}


def _ids(suite) -> tuple[str, list[str]]:
    return suite.id, [e.id for e in suite.expectations]


def _add_suite(context, suite):
    """Add ``suite`` keeping the ids of its file: GX's suite store gives every suite it adds new ids."""
    ids = _ids(suite)
    stored = context.suites.add(suite)
    if _ids(stored) != ids:
        stored.id = ids[0]
        for expectation, id_ in zip(stored.expectations, ids[1], strict=True):
            expectation.id = id_
        stored.save()
    return stored


def _detail_format(model: Model) -> dict[str, Any]:
    return {
        "result_format": "SUMMARY",
        "partial_unexpected_count": SAMPLE_KEYS,
        "unexpected_index_column_names": list(model.table_key),
    }


def _details(batch_definition, suite, screened: Mapping[str, dict], model: Model) -> dict[str, dict]:
    """Pass 2: observed values and sample keys of what failed in pass 1 (errors are not retried), by id."""
    wanted = [e for e in suite.expectations if failed(screened[e.id]) and error(screened[e.id]) is None]
    rows = [e for e in wanted if e.configuration.type == UNEXPECTED_ROWS]
    # Only map expectations report an unexpected_count; a failed table-level one has its result already.
    maps = [e for e in wanted if e not in rows and "unexpected_count" in screened[e.id]["result"]]
    out: dict[str, dict] = {}
    batch = None
    for expectations, result_format in ((maps, _detail_format(model)), (rows, {"result_format": "COMPLETE"})):
        if not expectations:
            continue
        configs = [e.configuration.to_json_dict() for e in expectations]
        subset = gx.ExpectationSuite(name=suite.name, expectations=configs)
        try:
            batch = batch or batch_definition.get_batch()
            for res in batch.validate(subset, result_format=result_format).results:
                out[res.expectation_config.id] = res.to_json_dict()
        except (sa.exc.SQLAlchemyError, psycopg.Error, gx_exceptions.GreatExpectationsError) as exc:
            # Detail only: what pass 1 found still fails the run, each failure saying why it has no rows.
            log.warning("%s: the failures' detail could not be read: %s", suite.name, exc)
            lost = {"raised_exception": True, "exception_message": f"{type(exc).__name__}: {exc}"}
            out.update({e.id: {"exception_info": lost} for e in expectations})
    return out


def _merge(screened: dict, detailed: dict | None) -> dict:
    """Pass 1 decides; pass 2 only adds detail, or why it could not (review: no keys, and not a word why)."""
    if detailed is not None and error(detailed) is not None:
        return {**screened, DETAIL_ERROR: error(detailed)}
    return screened if detailed is None else {**screened, "result": detailed["result"]}


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What every stream reads: the context and run id, each suite's file and its data rendered for this run (the GX
    suites of which were read before any ran), the models and the tables they are checked in."""

    context: Any
    run_id: Any
    files: Mapping[str, SuiteFile]
    rendered: Mapping[str, dict[str, Any]]
    models: Mapping[str, Model]
    relation: Callable[[str], str]


def _stream(
    plan: _Plan, source, conn: psycopg.Connection, queue, stopped: Callable[[], bool]
) -> tuple[dict[str, dict], dict[str, dict], dict[str, float]]:
    """One stream: the next suite of the shared ``queue`` while there is one (checks/streams.py), its query checks'
    rows kept on this stream's connection (checks/query_rows.py), pass 1 through a validation definition on this
    stream's data source, then pass 2 of what failed, on the same connection (the kept rows are its session's).
    Each suite's pass-1 results by id, its pass-2 details by id, and its seconds (its rows kept and pass 1)."""
    screened, detailed, seconds = {}, {}, {}
    keeper = query_rows.Keeper(conn, stopped)
    for name in streams.take(queue, stopped):  # stops when another stream failed or the task was interrupted
        started = time.perf_counter()
        data = keeper.suite(plan.rendered[name], plan.relation(name))
        # Added here, by the stream that takes the suite: the stores take each under its own name.
        suite = _add_suite(plan.context, gx_suites.read(plan.files[name].path, data))
        batch = source.get_asset(name).get_batch_definition(WHOLE_TABLE)
        definition = plan.context.validation_definitions.add(
            gx.ValidationDefinition(name=name, data=batch, suite=suite)
        )
        res = definition.run(result_format=SCREEN, run_id=plan.run_id)
        seconds[name] = round(time.perf_counter() - started, 3)
        screened[name] = {r.expectation_config.id: r.to_json_dict() for r in res.results}
        detailed[name] = _details(batch, suite, screened[name], plan.models[name])
        keeper.forget()
    return screened, detailed, seconds


def _run(
    sqlalchemy_url,
    models,
    suites,
    gx_dir: Path,
    relation,
    run_name: str,
    build_docs: bool,
    refs,
    variables,
    connections: int,
    seconds_before: Mapping[str, float] | None,
) -> tuple[dict[str, list], dict[str, Any]]:
    """Both passes and the Data Docs; every suite's results as plain data, in the suite's order, and its timing:
    each suite's seconds (its query rows kept and pass 1), and what the queue was ordered on."""
    started = time.perf_counter()
    rendered, planned = _planned(suites, refs, variables)
    context = _context(gx_dir)
    connect_args = _connect_args(sqlalchemy_url)
    connections = max(1, min(connections, len(planned)))
    with contextlib.ExitStack() as stack:
        # No publish swaps tables under GX's queries; on our connection: GX's would queue behind a waiting publish.
        lock_conn = stack.enter_context(locks.shared_for_session(connect_args))
        counts = {name: len(suite.expectations) for name, suite in planned.items()}
        costs, balanced_on = streams.costs(lock_conn, counts, relation, seconds_before)
        # Every stream's data source has every table: a suite runs on the stream that takes it (streams.take).
        tables = {name: relation(name) for name in planned}
        sources = stack.enter_context(_sources(context, connect_args, [tables] * connections))
        screened_at = time.perf_counter()
        # Each validation definition run on its own, not through a Checkpoint: a Checkpoint re-serializes and compares
        # all of them with its store before it runs (is_fresh: 1.2 CPU-s for 29 suites); storing each result it would
        # do, ValidationDefinition.run does too. The streams (checks/streams.py) run in threads, each on its own data
        # source's execution engine; the stores they share take results under distinct keys.
        plan = _Plan(context, gx.RunIdentifier(run_name=run_name), suites, rendered, models, relation)
        queue = streams.order(costs)
        jobs = [functools.partial(_stream, plan, source, conn, queue) for source, conn in sources]
        screened, detailed, seconds = {}, {}, {}
        for part, details, took in streams.run(jobs, [conn for _, conn in sources]):
            screened.update(part)
            detailed.update(details)
            seconds.update(took)
        results = {
            name: [_merge(screened[name][e.id], detailed[name].get(e.id)) for e in suite.expectations]
            for name, suite in planned.items()
        }
    docs_at = time.perf_counter()
    if build_docs:
        # One build for the run's results, without GX's index: it re-reads every stored result. GX's
        # UpdateDataDocsAction builds once per suite, each time with the index: 20 s more for 21 suites.
        # The store holds this validation's results only (gx_dir is fresh): all of them are this run's.
        context.build_data_docs(build_index=False)
    log.info(
        "GX: setup %.1fs, the suites (both passes) %.1fs, Data Docs %.1fs",
        screened_at - started,
        docs_at - screened_at,
        time.perf_counter() - docs_at,
    )
    return results, {"seconds": seconds, "streams_balanced_on": balanced_on}


def validate(
    sqlalchemy_url: str,
    models: Mapping[str, Model],
    suites: Mapping[str, SuiteFile],
    *,
    gx_dir: Path,
    relation: Callable[[str], str] | None = None,
    run_name: str = "adhoc",
    build_docs: bool = True,
    refs: Callable[[str], str] | None = None,
    variables: dict[str, Any] | None = None,
    connections: int = 1,
    seconds_before: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Run every suite against its model's table; return a JSON-able summary (see README).

    ``relation`` maps a model name to the table to check (default: the published one), so a
    write-audit-publish run validates its build schemas; ``refs`` maps the ``{{ ref() }}`` of suites
    (default: ``relation``): the whole model as the run sees it, where ``relation`` may be an incremental
    model's delta. ``variables`` are rendered into the suites (see suites.resolve_refs). ``gx_dir`` receives
    this validation's GX results and Data Docs pages (checks/docs_pages.collect reads them): it must be new
    or empty, so that it holds nothing else. ``connections`` is how many streams run pass 1 at once, each on
    its own warehouse connection (see _run), taking the suites from one queue ordered on ``seconds_before`` (each
    suite's seconds in an earlier validation, checks/history.suite_seconds) when it has every suite (the summary's
    ``streams_balanced_on`` says which); each suite's ``seconds`` in the summary are this validation's.
    """
    gx_dir = Path(gx_dir)
    if gx_dir.exists() and any(gx_dir.iterdir()):
        raise ValueError(f"{gx_dir}: not empty; GX writes one validation's results and Data Docs to a fresh folder")
    started = time.perf_counter()
    relation = relation or (lambda name: models[name].relation)
    refs = refs or relation
    # Outside a run (ad-hoc validation, tests) the anomaly checks look at today, and what is "published" is what
    # is checked (the validate task passes the published tables where they exist: a first run has none).
    variables = {"published": refs, **run_variables(models, checked=relation), **(variables or {})}
    with gx_logs.at_warning():
        results, timing = _run(
            sqlalchemy_url,
            models,
            suites,
            gx_dir,
            relation,
            run_name,
            build_docs,
            refs,
            variables,
            connections,
            seconds_before,
        )
    summary = summarize(results, relation, timing)
    summary.update(seconds=round(time.perf_counter() - started, 3), run_name=run_name)
    return summary
