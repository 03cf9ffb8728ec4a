"""Build one model in PostgreSQL, in a single transaction, so a failed build changes nothing.

``table`` models are replaced whole; ``daily_partition`` models have the run's day deleted and written
again, so reruns and backfills overwrite instead of appending; ``incremental`` models recompute only
the rows from the run's day minus their lookback (see :mod:`greenery.materialize.incremental`) unless
``full_refresh``, nothing is published yet, or the model's columns changed: then they are built whole.
In a build schema an incremental model is ``<model>__delta`` (the recomputed rows) plus a view
``<model>`` merging it over the published table, which downstream models read; publishing applies the
delta. Rows a model flags in ``quarantine_rule`` go to quarantine (see
:mod:`greenery.materialize.quarantine`).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from psycopg import sql

from greenery import docs, locks
from greenery.materialize import incremental, quarantine, relations, snapshot
from greenery.materialize.model_sql import ModelBuildError, ModelSql, ModelSqlError, OtherDaysError, build_error
from greenery.materialize.relations import ident
from greenery.project.models import Model, ancestors
from greenery.project.render import Interval, incremental_since, render


@dataclass(frozen=True)
class BuildResult:
    model: str
    relation: str
    rows: int
    seconds: float
    quarantined: int = 0
    incremental: bool = False
    # What publish must check before swapping the table in (a snapshot: the step it was built on).
    info: dict | None = None


@dataclass(frozen=True)
class Target:
    """Where one model of one run is written."""

    model: Model
    schema_of: Mapping[str, str]

    @property
    def schema(self) -> str:
        return self.schema_of.get(self.model.layer, self.model.layer)

    @property
    def relation(self) -> str:
        return f"{self.schema}.{self.model.name}"

    @property
    def in_place(self) -> bool:
        """Written straight into the reader schema (no write-audit-publish): tests and ad-hoc builds."""
        return self.schema == self.model.layer

    @property
    def quarantine(self) -> str:
        return f"{self.schema_of.get('quarantine', quarantine.SCHEMA)}.{self.model.name}"


def _columns_unchanged(conn, model: Model, interval: Interval, relation, target: str) -> bool:
    """Whether the model's select still has the published table's columns (else it is built whole)."""
    published = relations.column_types(conn, model.relation)
    if published is None:
        return False
    probe = ModelSql(model, target, render(model, interval, relation))
    with conn.cursor() as cur:
        probe.execute(cur, sql.SQL("select * from ("), sql.SQL(") as probe limit 0"))
        if model.config.get("quarantine") and model.column_types:
            # The kept rows get their declared types (quarantine.split), and the published table has them (second
            # review: compared with the select's own types, every run of such a model was a full build).
            typed = quarantine.typed_columns(model, [c.name for c in cur.description])
            probe.execute(cur, sql.SQL("select {} from (").format(typed), sql.SQL(") as probe limit 0"))
        # With the type modifier (review: numeric(6,1) -> numeric(8,3) kept merging, and the merge rounded the new
        # rows to the published column's one decimal, silently).
        wanted = [
            (c.name, c.type_code, cur.pgresult.fmod(i))
            for i, c in enumerate(cur.description)
            if c.name != quarantine.RULE_COLUMN
        ]
    if wanted != published:
        logging.getLogger(__name__).warning("%s: columns changed since it was published; building it whole", model.name)
    return wanted == published


def _above_built_whole(conn, model: Model, models: Mapping[str, Model], schema_of: Mapping[str, str]) -> bool:
    """Whether an incremental model ``model`` reads, directly or through others, was built whole in this run's build
    (a table there, no delta: its columns changed): its history may have changed (late rows, conflicting copies
    re-read from raw), so ``model`` is built whole too (review: only its window was recomputed, and the run ended
    green with tables that did not agree). In-place builds keep no trace of how a model was built: not looked at."""
    for name in ancestors(models)[model.name]:
        above = models[name]
        if above.materialized != "incremental" or schema_of.get(above.layer, above.layer) == above.layer:
            continue
        built = f"{schema_of[above.layer]}.{name}"
        if relations.exists(conn, built) and not relations.exists(conn, relations.delta_relation(built)):
            logging.getLogger(__name__).warning(
                "%s: %s was built whole in this run; building it whole", model.name, name
            )
            return True
    return False


def _write_incremental(cur, target: Target, select: ModelSql | sql.Composable, since: dt.datetime) -> int:
    if target.in_place:
        delta = "pg_temp._greenery_delta"
        rows = _create_as(cur, sql.SQL("create temporary table _greenery_delta on commit drop as "), select)
        incremental.merge(cur, target.model, target.relation, delta, since)
        return rows
    delta = relations.delta_relation(target.relation)
    incremental.drop_build(cur, target.relation)
    rows = _create_as(cur, sql.SQL("create table {} {} as ").format(ident(delta), relations.NO_AUTOVACUUM), select)
    # The published table's indexes on the delta too: a downstream incremental model reads the merged view below by
    # key (``session_id = any(array(...))``), and each branch of it then looks its keys up in an index. Without one on
    # the delta that branch is a scan comparing every row with every key (int_user_sessions' daily build at scale
    # 1000: 2.2 s with the published table's index alone, 0.27 s with both, 2.5-2.8 s reading the view whole).
    relations.create_indexes(cur, target.model, delta)
    cur.execute(sql.SQL("analyze {}").format(ident(delta)))
    cur.execute(incremental.merged_view(target.model, target.relation, delta, since))
    return rows


def _write_table(cur, target: Target, select: ModelSql | sql.Composable) -> int:
    staged = f"{target.relation}__next"
    cur.execute(sql.SQL("drop table if exists {}").format(ident(staged)))
    # A table the next run replaces whole is never updated, and the build analyzes it: autovacuum would only
    # hold a lock on it that the publish (or the next run's drop) waits for. An incremental model's table is
    # merged into for good: the publish turns autovacuum back on once it has moved it (wap.py).
    options = relations.NO_AUTOVACUUM if relations.replaced_whole(target.model) or not target.in_place else sql.SQL("")
    rows = _create_as(cur, sql.SQL("create table {} {} as ").format(ident(staged), options), select)
    relations.create_indexes(cur, target.model, staged)
    if target.model.materialized == "incremental" and not target.in_place:
        incremental.drop_build(cur, target.relation)
    cur.execute(sql.SQL("drop table if exists {}").format(ident(target.relation)))
    cur.execute(sql.SQL("alter table {} rename to {}").format(ident(staged), sql.Identifier(target.model.name)))
    return rows


def _write_snapshot(cur, target: Target, select: ModelSql | sql.Composable, step: dt.datetime) -> tuple[int, dict]:
    _create_as(cur, sql.SQL("create temporary table _greenery_snapshot_source on commit drop as "), select)
    staged = f"{target.relation}__next"
    cur.execute(sql.SQL("drop table if exists {}").format(ident(staged)))
    built_on = snapshot.published_table(cur.connection, target.model.relation)  # read under the shared lock, as seen
    rows, seen = snapshot.write(cur, target.model, staged, "pg_temp._greenery_snapshot_source", step)
    cur.execute(sql.SQL("drop table if exists {}").format(ident(target.relation)))
    cur.execute(sql.SQL("alter table {} rename to {}").format(ident(staged), sql.Identifier(target.model.name)))
    # Before the latest step the run keeps the history as it is (snapshot.write): publish leaves the table alone.
    kept = seen is not None and step < seen
    seen_at = seen.isoformat() if seen else None
    return rows, {"snapshot_seen": seen_at, "history_kept": kept, "built_on": built_on, "step": step.isoformat()}


def _write_partition(cur, target: Target, select: ModelSql | sql.Composable, day: dt.date) -> int:
    table = ident(target.relation)
    # Through a temporary table: a column added to the model since the table was created is appended.
    _create_as(cur, sql.SQL("create temporary table _greenery_day on commit drop as "), select)
    partition = sql.Identifier(target.model.partition_by)
    # Review: a row of another day went in beside the run's, and that day's own run later added its rows again (each
    # run deletes its own day only): the day held twice, every run green (one run's build has no duplicate).
    others = cur.execute(
        sql.SQL(
            "select count(*), min({p})::text, max({p})::text from pg_temp._greenery_day where {p} is distinct from %s"
        ).format(p=partition),
        (day,),
    ).fetchone()
    if others[0]:
        span = f"{others[1]} to {others[2]}" if others[1] else "NULL"
        raise OtherDaysError(
            f"model {target.model.name} ({target.model.path}): {others[0]} row(s) with {target.model.partition_by}"
            f" {span}, not the run's day {day}: a daily_partition model's select must give its run's day only"
            " (filter on the interval); nothing was written"
        )
    cur.execute(sql.SQL("create table if not exists {} (like pg_temp._greenery_day)").format(table))
    names = sql.SQL(", ").join(
        map(sql.Identifier, relations.append_new_columns(cur, target.relation, "pg_temp._greenery_day"))
    )
    cur.execute(sql.SQL("delete from {} where {} = %s").format(table, partition), (day,))
    cur.execute(sql.SQL("insert into {} ({}) select {} from pg_temp._greenery_day").format(table, names, names))
    rows = cur.rowcount
    cur.execute("drop table pg_temp._greenery_day")
    return rows


def _create_as(cur, prefix: sql.Composable, select: ModelSql | sql.Composable, suffix=None) -> int:
    """``prefix + select``: the model's own SQL (errors point into it) or a select of ours."""
    if isinstance(select, ModelSql):
        return select.execute(cur, prefix, suffix)
    cur.execute(sql.Composed([prefix, select, suffix or sql.SQL("")]))
    return cur.rowcount


def _check_unique_key(cur, model: Model, relation: str) -> None:
    """config(unique_key=...) names columns of the model (developer's trial: a misspelt key published green, and
    every alert on the table then said its keys could not be read)."""
    found = [name for name, _ in relations.columns(cur, relation) or ()]
    if missing := [k for k in model.unique_key if k not in found]:
        raise ModelSqlError(
            f"model {model.name} ({model.path}): config(unique_key=...) names {', '.join(missing)}, not a column of"
            f" the model ({', '.join(sorted(found))})"
        )


def build_model(
    conn,
    model: Model,
    models: Mapping[str, Model],
    interval: Interval,
    schema_of: Mapping[str, str] | None = None,
    run_id: str = "adhoc",
    full_refresh: bool = False,
    run_time: dt.datetime | None = None,
) -> BuildResult:
    """Build ``model`` for ``interval``; ``schema_of`` maps a layer (and ``quarantine``) to its schema.

    ``run_time`` is the run's own clock (rules such as "created in the future" use it, never now()).
    """
    target = Target(model, dict(schema_of or {}))
    run_time = run_time or dt.datetime.now(dt.UTC)
    ref = relations.resolver(conn, models, schema_of)
    relation = lambda name: target.relation if name == model.name else ref(name)  # noqa: E731
    since = incremental_since(model, interval)
    started = time.perf_counter()
    quarantined = 0
    try:
        # Reading published tables: never while another run's publish swaps them (see greenery.locks).
        with conn.transaction():
            locks.share(conn)
            is_incremental = (
                model.materialized == "incremental"
                and not full_refresh
                and not _above_built_whole(conn, model, models, target.schema_of)
                and _columns_unchanged(conn, model, interval, relation, target.relation)
            )
            published = relations.exists(conn, model.relation)
        select = ModelSql(
            model,
            target.relation,
            render(model, interval, relation, incremental=is_incremental, run_time=run_time, published=published),
        )
        with conn.transaction(), conn.cursor() as cur:
            locks.share(cur)
            # Hour buckets and dates are UTC whatever the role's or server's default time zone is.
            cur.execute("set local timezone = 'UTC'")
            if not is_incremental:
                for name, value in model.full_build_settings.items():
                    cur.execute("select set_config(%s, %s, true)", (name, value))
            cur.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(target.schema)))
            if model.config.get("quarantine"):
                select.execute(cur, quarantine.candidate_prefix())
                select, quarantined = quarantine.split(
                    cur,
                    model,
                    target.quarantine,
                    interval.day,
                    run_id,
                    run_time,
                    whole_table=not target.in_place,
                    since=since if is_incremental else None,
                )
            info = None
            if is_incremental:
                rows = _write_incremental(cur, target, select, since)
            elif model.materialized == "snapshot":
                rows, info = _write_snapshot(cur, target, select, interval.end)
            elif model.materialized in ("table", "incremental"):
                rows = _write_table(cur, target, select)
            else:
                rows = _write_partition(cur, target, select, interval.day)
            _check_unique_key(cur, model, target.relation)
            if target.in_place or not is_incremental:  # a build's delta gets them when it is merged at publish
                docs.apply_comments(cur, model.name, target.schema, model.name)
                cur.execute(sql.SQL("analyze {}").format(ident(target.relation)))
    # A DocsError names _docs.yml, not the model's SQL; a dropped merged view another run's (not retried either)
    except (ModelBuildError, docs.DocsError, relations.MergedViewDropped):
        raise
    except Exception as exc:
        raise build_error(model, target.relation, exc) from exc
    result = BuildResult(
        model.name, target.relation, rows, time.perf_counter() - started, quarantined, is_incremental, info
    )
    logging.getLogger(__name__).info(
        "built %s%s: %d rows in %.2fs (%d quarantined)",
        target.relation,
        f" incrementally from {since:%Y-%m-%d}" if is_incremental else "",
        rows,
        result.seconds,
        quarantined,
    )
    return result


def build_all(
    conn,
    models: Mapping[str, Model],
    interval: Interval,
    schema_of=None,
    run_id: str = "adhoc",
    full_refresh: bool = False,
    run_time: dt.datetime | None = None,
) -> list[BuildResult]:
    """Build every model in dependency order (what the DAG does, without Airflow)."""
    return [build_model(conn, m, models, interval, schema_of, run_id, full_refresh, run_time) for m in models.values()]
