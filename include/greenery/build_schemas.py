"""The run-private build schemas (``_build_<day>_<hash>__<layer>``): their prefix, and dropping finished ones.

``keep_key`` is the key of the build publishing now (wap.Build.key): its schemas are never dropped here.
"""

from __future__ import annotations

import datetime as dt
import logging

from psycopg import sql

from greenery import audit, config

log = logging.getLogger(__name__)

BUILD_PREFIX = "_build_"
BUILD_SCHEMAS = BUILD_PREFIX.replace("_", r"\_") + "%"  # a LIKE pattern: "_" is its one-character wildcard


def drop_views_on(conn, relation: str) -> None:
    """Drop build schemas' merge views that read ``relation`` (an incremental model being replaced whole).

    Such a view belongs to a run whose downstream models then read the newly published table, a
    superset of what the view showed. Any other view on a published table blocks the publish, on
    purpose (see the README).
    """
    views = conn.execute(
        "select distinct v.oid::regclass::text from pg_depend d"
        " join pg_rewrite r on r.oid = d.objid join pg_class v on v.oid = r.ev_class"
        " join pg_namespace n on n.oid = v.relnamespace"
        " where d.refobjid = to_regclass(%s) and v.oid <> d.refobjid and n.nspname like %s",
        (relation, BUILD_SCHEMAS),
    ).fetchall()
    for (view,) in views:
        conn.execute(sql.SQL("drop view if exists {}").format(sql.SQL(view)))


def touch(conn, key: str) -> None:
    """Mark the build ``key`` in use now, as a task starts work on it (review: validate did not, so a long last
    model and its validation, each shorter than the TTL, left the build idle past it for another run's publish)."""
    if audit.exists(conn, "builds"):  # else nothing was prepared, which the caller says
        query = sql.SQL("update {} set touched_at = clock_timestamp() where key = %s").format(audit.table("builds"))
        conn.execute(query, (key,))


def drop_finished(conn, keep_key: str | None, ttl: dt.timedelta | None = None) -> list[str]:
    """Drop the build schemas of builds that are published, idle longer than ``ttl`` (default: the setting
    GREENERY_BUILD_TTL_HOURS), or unregistered.

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
        (ttl if ttl is not None else config.get().build_ttl, BUILD_SCHEMAS),
    ).fetchall()
    dropped = []
    for schema, state, idle, ours, owner in rows:
        if keep_key is not None and schema.startswith(keep_key + "__"):
            continue
        if not ours:  # another role's (the role the pipeline ran as before): dropping it failed the whole publish
            log.warning(
                "build schema %s is %s's: left for its owner to drop (drop schema %s cascade)", schema, owner, schema
            )
            continue
        if state is None or state == "published" or idle:
            conn.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(schema)))
            dropped.append(schema)
    keys = sorted({s.split("__")[0] for s in dropped})
    if keys:
        conn.execute(
            sql.SQL("update {} set state = 'dropped' where key = any(%s) and state <> 'published'").format(
                audit.table("builds")
            ),
            (keys,),
        )
    return dropped
