"""Whether the run's role may replace what it publishes, checked before anything is built.

The database's ``create`` and ``temp`` (warehouse.require_supported_server) are not enough where the published schemas
and tables were made by another role (a first deployment run as a superuser, Compose's, a DBA's): the role then builds
the whole day and fails at ``publish``, on PostgreSQL's bare "permission denied for schema marts" or "must be owner of
table fact_orders" (review). A session that is read-only (the role's ``default_transaction_read_only``, a standby)
failed on the first ``create schema`` with PostgreSQL's words only.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from greenery.errors import RetryCannotFix


class CannotPublishError(RuntimeError, RetryCannotFix):
    """The role may not create in a schema the run publishes to, or does not own a table a publish replaces."""


def require(conn, published: Mapping[str, Collection[str]]) -> None:
    """Refuse, naming each schema and table and the statement that fixes it, when the role's session is read-only,
    lacks ``create`` or ``usage`` on a schema of ``published`` that exists, or does not own (nor act as the owner
    of) one of its tables. ``published``: each schema's tables a run replaces or writes to."""
    role, database, read_only, standby, source = conn.execute(
        "select current_user, current_database(), current_setting('transaction_read_only') = 'on',"
        " pg_is_in_recovery(), (select source from pg_settings where name = 'default_transaction_read_only')"
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
        "select nspname, pg_get_userbyid(nspowner) from pg_namespace where nspname = any(%s)"
        " and not (has_schema_privilege(oid, 'create') and has_schema_privilege(oid, 'usage')) order by nspname",
        (list(published),),
    ).fetchall()
    tables = [
        (schema, table, owner)
        for schema, table, owner in conn.execute(
            "select n.nspname, c.relname, pg_get_userbyid(c.relowner) from pg_class c join pg_namespace n"
            " on n.oid = c.relnamespace where n.nspname = any(%s) and c.relkind in ('r', 'p')"
            " and not pg_has_role(c.relowner, 'usage') order by 1, 2",
            (list(published),),
        ).fetchall()
        if table in published[schema]
    ]
    if not (schemas or tables):
        return
    said = [f"schema {schema} (owner {owner}) grants it no create" for schema, owner in schemas]
    said += [f"{schema}.{table} is {owner}'s, not its own" for schema, table, owner in tables]
    fixes = [f"grant usage, create on schema {schema} to {role}" for schema, _ in schemas]
    fixes += [f"alter table {schema}.{table} owner to {role}" for schema, table, _ in tables]
    raise CannotPublishError(
        f"role {role} may not replace what a run publishes: {'; '.join(said)} (a publish creates tables in these"
        f" schemas and drops the ones it replaces); nothing was built. As their owner: {'; '.join(fixes)}"
    )
