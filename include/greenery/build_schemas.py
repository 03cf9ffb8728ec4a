"""The run-private build schemas (``_build_<day>_<hash>__<layer>``): their prefix, and dropping finished ones.

``keep_key`` is the key of the build publishing now (wap.Build.key): its schemas are never dropped here.
"""

from __future__ import annotations

import datetime as dt
import logging

import psycopg
from psycopg import sql

from greenery import audit, config, locks

log = logging.getLogger(__name__)

BUILD_PREFIX = "_build_"
_BUILD_SCHEMAS = BUILD_PREFIX.replace("_", r"\_") + "%"  # a LIKE pattern: "_" is its one-character wildcard


# The views of build schemas (v, in n) and what each reads (d.refobjid): an incremental build's merge views.
_BUILD_VIEWS = (
    " from pg_depend d join pg_rewrite r on r.oid = d.objid join pg_class v on v.oid = r.ev_class"
    " join pg_namespace n on n.oid = v.relnamespace where v.oid <> d.refobjid and n.nspname like %s"
)


def drop_views_on(conn, relation: str) -> None:
    """Drop build schemas' merge views that read ``relation`` (an incremental model being replaced whole).

    Such a view belongs to a run whose downstream models then read the newly published table, a
    superset of what the view showed. Any other view on a published table blocks the publish, on
    purpose (see the README).
    """
    views = conn.execute(
        "select distinct v.oid::regclass::text" + _BUILD_VIEWS + " and d.refobjid = to_regclass(%s)",
        (_BUILD_SCHEMAS, relation),
    ).fetchall()
    for (view,) in views:
        conn.execute(sql.SQL("drop view if exists {}").format(sql.SQL(view)))


def others_views_on(conn, schemas: list[str]) -> list[tuple[str, str]]:
    """(schema, owner) of the build schemas of other roles (:func:`drop_finished` leaves them to their owner) whose
    views read a table of ``schemas``: merge views left by a run that did not publish. :func:`drop_views_on` drops
    such a view before a publish replaces the table it reads; another role's it may not (publish_grants)."""
    return conn.execute(
        "select distinct quote_ident(n.nspname), pg_get_userbyid(n.nspowner)"
        + _BUILD_VIEWS
        + " and d.refobjid in (select c.oid from pg_class c join pg_namespace tn on tn.oid = c.relnamespace"
        " where tn.nspname = any(%s))"
        " and not pg_has_role(v.relowner, 'usage') and not pg_has_role(n.nspowner, 'usage') order by 1",
        (_BUILD_SCHEMAS, schemas),
    ).fetchall()


def touch(conn, key: str) -> None:
    """Mark the build ``key`` in use now, as a task starts work on it (review: validate did not, so a long last
    model and its validation, each shorter than the TTL, left the build idle past it for another run's publish)."""
    if audit.exists(conn, "builds"):  # else nothing was prepared, which the caller says
        query = sql.SQL("update {} set touched_at = clock_timestamp() where key = %s").format(audit.table("builds"))
        conn.execute(query, (key,))


# Builds dropped by one call, the oldest first. Dropping a schema locks each of its objects until the transaction
# ends, and a build's five schemas hold some 200: 60 builds left by an abandoned backfill ran PostgreSQL's shared
# lock table out (max_locks_per_transaction, 64 a connection by default), and every publish then failed, "out of
# shared memory", leaving them all (review). Ten a publish clears the backlog in a few days' runs.
BUILDS_PER_CALL = 10


def drop_finished(
    conn, keep_key: str | None, ttl: dt.timedelta | None = None, limit: int = BUILDS_PER_CALL
) -> list[str]:
    """Drop the build schemas of builds that are published, idle longer than ``ttl`` (default: the setting
    GREENERY_BUILD_TTL_HOURS), or unregistered: those of ``limit`` builds at most, the oldest first.

    Runs under the exclusive lock: a build under way holds the shared one while it writes, and touches
    its registry row in the same transaction, so it is never seen idle here.
    """
    rows = conn.execute(
        sql.SQL(
            "select n.nspname, b.state, b.touched_at < now() - %s, pg_has_role(n.nspowner, 'usage'),"
            " pg_get_userbyid(n.nspowner)"
            " from pg_namespace n left join {} b on b.key = split_part(n.nspname, '__', 1)"
            " where n.nspname like %s order by n.nspname"
        ).format(audit.table("builds")),
        (ttl if ttl is not None else config.get().build_ttl, _BUILD_SCHEMAS),
    ).fetchall()
    dropped, builds = [], set()
    for schema, state, idle, ours, owner in rows:
        if keep_key is not None and schema.startswith(keep_key + "__"):
            continue
        if not ours:  # another role's (the role the pipeline ran as before): dropping it failed the whole publish
            log.warning(
                "build schema %s is %s's: left for its owner to drop (drop schema %s cascade)", schema, owner, schema
            )
            continue
        if state is None or state == "published" or idle:
            if (key := schema.split("__")[0]) not in builds and len(builds) >= limit:
                continue  # the next call's
            conn.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(schema)))
            dropped.append(schema)
            builds.add(key)
    keys = sorted(builds)
    if keys:
        conn.execute(
            sql.SQL("update {} set state = 'dropped' where key = any(%s) and state <> 'published'").format(
                audit.table("builds")
            ),
            (keys,),
        )
    return dropped


def drop_finished_unless_held(conn, keep_key: str, ttl: dt.timedelta | None) -> list[str]:
    """:func:`drop_finished` inside publish's transaction, left for the next publish when a session holds one of those
    schemas' tables (a failed run's, kept for debugging) or the lock table is full: old build schemas never stop the
    marts going out (review)."""
    try:
        with conn.transaction():
            return drop_finished(conn, keep_key, ttl)
    except psycopg.errors.LockNotAvailable:
        log.warning("finished build schemas kept for the next publish: a session holds one of their tables")
        return []
    except psycopg.errors.OutOfMemory as exc:  # a lock table smaller than the default's (BUILDS_PER_CALL)
        log.warning("finished build schemas kept for the next publish: %s (max_locks_per_transaction)", exc)
        return []


def drop_all_finished(conn, keep_key: str | None = None, ttl: dt.timedelta | None = None) -> list[str]:
    """Every finished build's schemas, :data:`BUILDS_PER_CALL` builds a transaction (maintenance and tests)."""
    audit.ensure(conn)
    dropped: list[str] = []
    while True:
        with conn.transaction():
            locks.exclusive(conn)
            if not (batch := drop_finished(conn, keep_key, ttl)):
                return dropped
        dropped += batch
