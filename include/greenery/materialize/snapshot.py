"""Snapshots: the history of mutable rows, with dbt's snapshot semantics and its ``check`` strategy.

A snapshot model selects the current state of some rows (``unique_key``) and names the columns that change
(``check_cols``). Its table holds every version of each row: the model's columns plus ``valid_from`` and
``valid_to`` (NULL for the current version). A run observes the source at the end of its day, ``T``:

- a key not in the snapshot gets its first version, valid from T;
- a key whose check columns differ from its current version: that version ends at T, a new one starts;
- a current key the source no longer has: its version ends at T (dbt's invalidate_hard_deletes).

A run is one step of history, so reruns and backfills must not rewrite it: a run whose T is before the
snapshot's latest step keeps the snapshot as it is (it did not see what happened since, and cannot say
what was true then); a run at the latest step itself (a rerun of that day) undoes that step and takes it
again, so it is idempotent. The whole table is built in the run's build schema and replaced at publish
(like a ``table`` model); publish refuses it if another run stepped the snapshot meanwhile, and leaves the
published one alone when the run kept the history (publish_checks.check_snapshots).
"""

from __future__ import annotations

import datetime as dt
import logging

from psycopg import sql

from greenery import audit
from greenery.materialize import relations
from greenery.materialize.relations import ident
from greenery.project.models import Model

log = logging.getLogger(__name__)

VALID_FROM, VALID_TO = "valid_from", "valid_to"


def latest_step(conn, relation: str) -> dt.datetime | None:
    """The snapshot's latest step: its newest version, or the end of the day of the latest run that published
    it (a step may find nothing changed), whichever is later; None before the first publish."""
    if not relations.exists(conn, relation):
        return None
    newest = conn.execute(
        sql.SQL("select max({}) from {}").format(sql.Identifier(VALID_FROM), ident(relation))
    ).fetchone()[0]
    published = audit.last_publish_of(conn, relation)
    stepped = dt.datetime.combine(published + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC) if published else None
    return max((t for t in (newest, stepped) if t is not None), default=None)


def published_table(conn, relation: str) -> int | None:
    """Which table is published as ``relation`` now (its oid; None before the first publish). A publish that steps
    the snapshot replaces the table, so another oid means another run's snapshot, even at the same latest step: a
    rerun of the latest day takes that step again (review: a build made on the step as it first was put it back)."""
    return conn.execute("select to_regclass(%s)::oid::bigint", (relation,)).fetchone()[0]


def same_history(conn, published: str, built: str, step: dt.datetime) -> bool:
    """Whether a build's snapshot stepped from the history published now: the two tables hold the same versions with
    ``step`` undone in both (two reruns of one day on the same raw do; a build made before a rerun took the step
    again on changed raw does not). Read only when the published table was replaced since the build (rare)."""
    columns = relations.columns(conn, built)
    if columns != relations.columns(conn, published):
        return False
    cols = sql.SQL(", ").join(sql.Identifier(name) for name, _ in columns if name != VALID_TO)
    vf, vt = sql.Identifier(VALID_FROM), sql.Identifier(VALID_TO)
    undone = [
        sql.SQL(
            "select {cols}, case when {vt} = %(step)s then null else {vt} end from {t} where {vf} <> %(step)s"
        ).format(cols=cols, vt=vt, vf=vf, t=ident(table))
        for table in (published, built)
    ]
    differ = sql.SQL("(({a}) except all ({b})) union all (({b}) except all ({a}))").format(a=undone[0], b=undone[1])
    return conn.execute(sql.SQL("select not exists ({})").format(differ), {"step": step}).fetchone()[0]


def write(cur, model: Model, target: str, source: str, step: dt.datetime) -> tuple[int, dt.datetime | None]:
    """Create ``target``: the published snapshot stepped to ``step`` from the rows of ``source`` (a table).

    Returns (rows written, the latest step of the published snapshot the table was built from).
    """
    published = model.relation
    seen = latest_step(cur.connection, published)
    columns = [name for name, _ in relations.columns(cur, source) or []]
    cols = sql.SQL(", ").join(map(sql.Identifier, columns))
    key = sql.SQL(" and ").join(sql.SQL("s.{k} = p.{k}").format(k=sql.Identifier(k)) for k in model.unique_key)
    changed = sql.SQL(" or ").join(
        sql.SQL("s.{c} is distinct from p.{c}").format(c=sql.Identifier(c)) for c in model.check_cols
    )
    vf, vt = sql.Identifier(VALID_FROM), sql.Identifier(VALID_TO)
    if seen is None:
        # The first step: every row's first version.
        cur.execute(
            sql.SQL(
                "create table {} as select {cols}, %s::timestamptz as {vf}, null::timestamptz as {vt} from {src}"
            ).format(ident(target), cols=cols, vf=vf, vt=vt, src=ident(source)),
            (step,),
        )
        return cur.rowcount, None
    if step < seen:
        log.warning("%s: the run's step %s is before the snapshot's latest (%s): history kept", model.name, step, seen)
        cur.execute(sql.SQL("create table {} as select * from {}").format(ident(target), ident(published)))
        return cur.rowcount, seen
    # At the latest step itself (a rerun of that day): undo that step first, then take it again.
    cur.execute(
        sql.SQL(
            "create temporary table _greenery_history on commit drop as"
            " select {cols}, {vf}, case when {vt} = %(step)s then null else {vt} end as {vt}"
            " from {published} where {vf} <> %(step)s"
        ).format(cols=cols, vf=vf, vt=vt, published=ident(published)),
        {"step": step},
    )
    cur.execute(
        sql.SQL(
            "create table {target} as"
            " with current_versions as (select * from _greenery_history where {vt} is null),"
            " moved as ("  # keys whose current version ends at this step: changed or gone
            "   select p.* from current_versions as p"
            "   where not exists (select from {src} as s where {key} and not ({changed}))"
            " )"
            " select {cols}, h.{vf}, case when h.{vt} is null and exists"
            "   (select from moved as p where {key_h}) then %(step)s else h.{vt} end as {vt}"
            " from _greenery_history as h"
            " union all"
            " select {s_cols}, %(step)s, null from {src} as s"
            " where not exists (select from current_versions as p where {key} and not ({changed}))"
        ).format(
            target=ident(target),
            vf=vf,
            vt=vt,
            src=ident(source),
            key=key,
            changed=changed,
            cols=sql.SQL(", ").join(sql.SQL("h.{}").format(sql.Identifier(c)) for c in columns),
            s_cols=sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(c)) for c in columns),
            key_h=sql.SQL(" and ").join(sql.SQL("p.{k} = h.{k}").format(k=sql.Identifier(k)) for k in model.unique_key),
        ),
        {"step": step},
    )
    return cur.rowcount, seen
