"""Whether the run's role may replace what it publishes, checked before anything is built.

The database's ``create`` and ``temp`` (warehouse.require_supported_server) are not enough where the published schemas
and tables were made by another role (a first deployment run as a superuser, Compose's, a DBA's): the role then builds
the whole day and fails at ``publish``, on PostgreSQL's bare "permission denied for schema marts" or "must be owner of
table fact_orders" (review). A session that is read-only (the role's ``default_transaction_read_only``, a standby)
failed on the first ``create schema`` with PostgreSQL's words only.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping

from greenery import build_schemas
from greenery.errors import RetryCannotFix

log = logging.getLogger(__name__)


class CannotPublishError(RuntimeError, RetryCannotFix):
    """The role may not create in a schema the run publishes to, or does not own a table a publish replaces."""


def require(conn, published: Mapping[str, Collection[str]], full_refresh: bool = False) -> None:
    """Refuse, naming each schema and table and the statement that fixes it, when the role's session is read-only,
    lacks ``create`` or ``usage`` on a schema of ``published`` that exists, or does not own (nor act as the owner
    of) one of its tables; and, for a ``full_refresh``, when another role's build holds views on published tables
    (a daily run, which merges into them, is only told so in its log). ``published``: each schema's tables a run
    replaces or writes to."""
    # Names as a statement needs them (review: "to greenery_Etl" granted to greenery_etl, or to no such role).
    role, database, read_only, standby, source = conn.execute(
        "select quote_ident(current_user), quote_ident(current_database()),"
        " current_setting('transaction_read_only') = 'on', pg_is_in_recovery(),"
        " (select source from pg_settings where name = 'default_transaction_read_only')"
    ).fetchone()
    if read_only:
        # Where the setting comes from says what turns it off (diff review: "alter role" did nothing for a database's).
        fix = {
            "user": f"default_transaction_read_only is on for role {role}; as a superuser (or a role with"
            f" CREATEROLE): alter role {role} reset default_transaction_read_only",
            "database": f"default_transaction_read_only is on for database {database}; as its owner: alter database"
            f" {database} reset default_transaction_read_only",
            "database user": f"default_transaction_read_only is on for role {role} in database {database}; as a"
            f" superuser: alter role {role} in database {database} reset default_transaction_read_only",
        }.get(source, f"default_transaction_read_only is on (set by: {source}); turn it off where it is set")
        raise CannotPublishError(
            "the warehouse session is read-only: a run creates schemas and replaces tables; nothing was built. "
            + ("The server is a standby: connect to the primary" if standby else fix)
        )
    schemas = conn.execute(
        "select quote_ident(nspname), pg_get_userbyid(nspowner), array_remove(array[case when not"
        " has_schema_privilege(oid, 'usage') then 'usage' end, case when not has_schema_privilege(oid, 'create')"
        " then 'create' end], null) from pg_namespace where nspname = any(%s) order by nspname",
        (list(published),),
    ).fetchall()
    schemas = [(schema, owner, missing) for schema, owner, missing in schemas if missing]
    tables = [
        (schema, table, owner)
        for name, relname, schema, table, owner in conn.execute(
            "select n.nspname, c.relname, quote_ident(n.nspname), quote_ident(c.relname), pg_get_userbyid(c.relowner)"
            " from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = any(%s)"
            " and c.relkind in ('r', 'p') and not pg_has_role(c.relowner, 'usage') order by 1, 2",
            (list(published),),
        ).fetchall()
        if relname in published[name]
    ]
    # Diff review: the new role's full refresh built and checked the whole day, then failed on "permission denied
    # for schema _build_..." dropping the views another role's unpublished build left on the published tables.
    views = build_schemas.others_views_on(conn, list(published))
    if views and not full_refresh:  # they stop only the publish of an incremental table replaced whole (diff review)
        for schema, owner in views:
            log.warning(
                "build schema %s (owner %s) holds views on published tables: a full refresh's publish could not drop"
                " them; as its owner: drop schema %s cascade",
                schema,
                owner,
                schema,
            )
        views = []
    if not (schemas or tables or views):
        return
    said = [f"schema {schema} (owner {owner}) grants it no {' or '.join(no)}" for schema, owner, no in schemas]
    said += [f"{schema}.{table} is {owner}'s, not its own" for schema, table, owner in tables]
    said += [
        f"build schema {schema} (owner {owner}, a run of that role's left unpublished) holds views that read published"
        " tables: replacing one whole (a full refresh) could not drop them"
        for schema, owner in views
    ]
    fixes = [f"grant usage, create on schema {schema} to {role}" for schema, _, _ in schemas]
    fixes += [f"alter table {schema}.{table} owner to {role}" for schema, table, _ in tables]
    fixes += [f"drop schema {schema} cascade" for schema, _ in views]
    raise CannotPublishError(
        f"role {role} may not replace what a run publishes: {'; '.join(said)} (a publish creates tables in these"
        f" schemas and drops the ones it replaces); nothing was built. As their owner: {'; '.join(fixes)}"
    )
