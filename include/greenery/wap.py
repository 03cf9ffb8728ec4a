"""Write-audit-publish: build in run-private schemas, validate there, publish atomically.

A run writes every model into its own schemas (``_build_<day>_<hash>__<layer>``). Readers only use
``staging``, ``intermediate`` and ``marts``. Publishing moves the run's tables into those schemas in
one transaction under an advisory lock: a reader sees all of the previous run's tables or all of
this run's, never a mix, never a missing table. A run that fails validation publishes nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from psycopg import sql

from greenery import build as build_module
from greenery import docs, settings
from greenery.models import Interval, Model, incremental_since

log = logging.getLogger(__name__)

BUILD_PREFIX = "_build_"
AUDIT_SCHEMA = "greenery_audit"
# Any 64-bit constant shared by every publisher of this warehouse.
PUBLISH_LOCK_KEY = 0x67726E7279  # "grnry"


@dataclass(frozen=True)
class Build:
    """Where one run writes: a schema per layer, named after the run's day and id."""

    run_id: str
    day: dt.date

    @property
    def key(self) -> str:
        digest = hashlib.sha1(self.run_id.encode(), usedforsecurity=False).hexdigest()[:8]
        return f"{BUILD_PREFIX}{self.day:%Y%m%d}_{digest}"

    def schema(self, layer: str) -> str:
        return f"{self.key}__{layer}"

    @property
    def schema_of(self) -> dict[str, str]:
        return {layer: self.schema(layer) for layer in settings.LAYERS}


def table_exists(conn, schema: str, table: str) -> bool:
    found = conn.execute("select to_regclass(%s)", (sql.Identifier(schema, table).as_string(conn),)).fetchone()
    return found[0] is not None


def prepare(conn, build: Build) -> None:
    """Start a run's build from empty schemas (a rerun of the whole run starts clean too)."""
    with conn.transaction():
        for schema in build.schema_of.values():
            conn.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(schema)))
            conn.execute(sql.SQL("create schema {}").format(sql.Identifier(schema)))


def built_models(conn, models: Mapping[str, Model], build: Build) -> list[str]:
    """The models this run has in its build schemas, in dependency order."""
    return [name for name, m in models.items() if table_exists(conn, build.schema(m.layer), name)]


def built_delta(conn, model: Model, build: Build) -> str | None:
    """The delta (recomputed rows) of an incremental build of ``model`` in this run, if there is one.

    Validation checks it instead of the merged view, so a daily run's validation follows the day's data
    (the merge keeps keys unique across the rest); publish merges it into the published table.
    """
    if model.materialized != "incremental":
        return None
    delta = build_module.delta_relation(f"{build.schema(model.layer)}.{model.name}")
    return delta if table_exists(conn, *delta.split(".")) else None


def _ensure_audit(conn) -> None:
    conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(AUDIT_SCHEMA)))
    conn.execute(
        sql.SQL(
            "create table if not exists {} ("
            " run_id text not null, logical_date date not null, published_at timestamptz not null,"
            " tables text[] not null)"
        ).format(sql.Identifier(AUDIT_SCHEMA, "publish_log"))
    )
    conn.execute(
        sql.SQL(
            "create table if not exists {} ("
            " run_id text not null, logical_date date not null, validated_at timestamptz not null,"
            " published boolean not null, summary jsonb not null)"
        ).format(sql.Identifier(AUDIT_SCHEMA, "validation_runs"))
    )


def record_validation(conn, summary: dict, published: bool) -> None:
    """Keep every run's validation summary (the UI's data-quality view and on-call read it)."""
    from psycopg.types.json import Jsonb

    with conn.transaction():
        _ensure_audit(conn)
        conn.execute(
            sql.SQL(
                "insert into {} (run_id, logical_date, validated_at, published, summary) values (%s, %s, now(), %s, %s)"
            ).format(sql.Identifier(AUDIT_SCHEMA, "validation_runs")),
            (summary["run_id"], summary["logical_date"], published, Jsonb(summary)),
        )


def last_published(conn) -> dict | None:
    """The most recent publish (run id, day, time), or None when nothing was ever published."""
    if not table_exists(conn, AUDIT_SCHEMA, "publish_log"):
        return None
    row = conn.execute(
        sql.SQL("select run_id, logical_date, published_at from {} order by published_at desc limit 1").format(
            sql.Identifier(AUDIT_SCHEMA, "publish_log")
        )
    ).fetchone()
    return None if row is None else {"run_id": row[0], "logical_date": row[1].isoformat(), "published_at": row[2]}


def publish(conn, models: Mapping[str, Model], build: Build) -> list[str]:
    """Move the run's tables into the reader schemas, atomically; return the published relations."""
    published = []
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (PUBLISH_LOCK_KEY,))
        _ensure_audit(conn)
        for name in built_models(conn, models, build):
            model = models[name]
            source = sql.Identifier(build.schema(model.layer), name)
            target = sql.Identifier(model.layer, name)
            conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(model.layer)))
            delta = built_delta(conn, model, build)
            if delta is not None:
                # The build recomputed only recent rows: apply them to the published table.
                since = incremental_since(model, Interval.for_day(build.day))
                for statement, params in build_module.merge_statements(model, model.relation, delta, since):
                    conn.execute(statement, params)
                # Nothing may keep depending on the published table once this run is done.
                conn.execute(sql.SQL("drop view {}").format(source))
                with conn.cursor() as cur:
                    docs.apply_comments(cur, name, model.layer, name)
            elif model.materialized == "daily_partition":
                # The build holds only the run's day: replace that day, keep the others.
                conn.execute(sql.SQL("create table if not exists {} (like {} including all)").format(target, source))
                conn.execute(
                    sql.SQL("delete from {} where {} = %s").format(target, sql.Identifier(model.partition_by)),
                    (build.day,),
                )
                conn.execute(sql.SQL("insert into {} select * from {}").format(target, source))
            else:
                _drop_build_views_on(conn, model.relation)
                conn.execute(sql.SQL("drop table if exists {}").format(target))
                conn.execute(sql.SQL("alter table {} set schema {}").format(source, sql.Identifier(model.layer)))
            published.append(model.relation)
        conn.execute(
            sql.SQL("insert into {} values (%s, %s, now(), %s)").format(sql.Identifier(AUDIT_SCHEMA, "publish_log")),
            (build.run_id, build.day, published),
        )
    log.info("published %d tables of run %s (%s)", len(published), build.run_id, build.day)
    return published


def _drop_build_views_on(conn, relation: str) -> None:
    """Drop other runs' merge views that read ``relation`` (an incremental model being replaced whole).

    Runs are serialized, so such views belong to runs that were never published. Any other view on a
    published table still blocks the publish, on purpose (see the README).
    """
    views = conn.execute(
        "select distinct v.oid::regclass::text from pg_depend d"
        " join pg_rewrite r on r.oid = d.objid join pg_class v on v.oid = r.ev_class"
        " join pg_namespace n on n.oid = v.relnamespace"
        " where d.refobjid = to_regclass(%s) and v.oid <> d.refobjid and n.nspname like %s",
        (relation, BUILD_PREFIX.replace("_", r"\_") + "%"),
    ).fetchall()
    for (view,) in views:
        conn.execute(sql.SQL("drop view if exists {}").format(sql.SQL(view)))


def drop_other_builds(conn, keep: Build | None = None) -> list[str]:
    """Drop the build schemas of earlier runs (runs are serialized, so none of them is in progress)."""
    rows = conn.execute(
        "select nspname from pg_namespace where nspname like %s order by nspname",
        (BUILD_PREFIX.replace("_", r"\_") + "%",),
    ).fetchall()
    keep_schemas = set(keep.schema_of.values()) if keep else set()
    dropped = []
    with conn.transaction():
        for (schema,) in rows:
            if schema not in keep_schemas:
                conn.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(schema)))
                dropped.append(schema)
    return dropped
