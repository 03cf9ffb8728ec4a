"""A table's owner and privileges, kept on the table that replaces it.

A load swaps in new raw tables (sources/load.py) and a publish new marts (wap.py), and privileges belong to a
table, not to its name: without this, a role granted ``select`` on raw's tables (README: the pipeline's role) could
not read raw after the next load, and the run blamed the tables as missing; a reader granted ``select`` on the marts
lost it at the next publish (reviews). A load keeps the owner and the ACL exactly, or fails (:func:`keep`); a
publish gives every grantee its grants again and fails on nothing it cannot restore exactly
(:func:`kept_across_swap`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator
from dataclasses import dataclass

import psycopg
from psycopg import sql


class PrivilegesNotKept(RuntimeError):
    """The replacement table could not be given the old table's owner or privileges, exactly."""


@dataclass(frozen=True)
class Grant:
    column: str | None  # None: the whole table
    grantor: str
    grantee: str | None  # None: PUBLIC
    privilege: str  # as aclexplode names it: SELECT, INSERT, ...
    grantable: bool

    def __str__(self) -> str:
        on = f" ({self.column})" if self.column else ""
        option = " with grant option" if self.grantable else ""
        return f"{self.privilege.lower()}{on} to {self.grantee or 'public'}{option} granted by {self.grantor}"


# A NULL relacl means the owner's default privileges (acldefault), which a new table gets too. In ACL order, the
# table's before its columns' (the order they are made again in, but for the load's own grant option: see keep).
_PRIVILEGES = """
with rel as (
    select c.oid, c.relowner, c.relacl from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = %(schema)s and c.relname = %(table)s
), entries as (
    select 0 as attnum, null::name as col, a.*
    from rel, aclexplode(coalesce(rel.relacl, acldefault('r', rel.relowner))) with ordinality as a
    union all
    select t.attnum, t.attname, a.*
    from rel join pg_attribute t on t.attrelid = rel.oid and t.attnum > 0 and not t.attisdropped,
        aclexplode(t.attacl) with ordinality as a
)
select pg_get_userbyid(rel.relowner), e.col, pg_get_userbyid(e.grantor),
    case when e.grantee <> 0 then pg_get_userbyid(e.grantee) end, e.privilege_type, e.is_grantable
from rel left join entries e on true
order by e.attnum, e.ordinality
"""


def read(cur, schema: str, table: str) -> tuple[str, list[Grant]] | None:
    """(owner, grants) of ``schema.table``, or None when there is no such table."""
    rows = cur.execute(_PRIVILEGES, {"schema": schema, "table": table}).fetchall()
    if not rows:
        return None
    return rows[0][0], [Grant(*row[1:]) for row in rows if row[2] is not None]


def keep(cur, schema: str, table: str, columns: Collection[str], old: tuple[str, list[Grant]]) -> None:
    """Give ``schema.table`` (just created, with ``columns``) the owner and grants ``old`` (:func:`read`) of the
    table it replaces.

    The owner's grants are made by the load's role, which could drop the old table, so holds the owner's privileges
    (PostgreSQL records them as the owner's); any other grantor's as that role (``set local role``), which the
    load's role must be able to become (a superuser can): the ACL is the old one entry for entry, grantors included,
    or the load fails. A column's grants go with the old table when the new one lacks that column."""
    owner, grants = old
    where, ident = f"{schema}.{table}", sql.Identifier(schema, table)
    me = cur.execute("select current_user").fetchone()[0]
    if read(cur, schema, table)[0] != owner:
        _run(
            cur,
            sql.SQL("alter table {} owner to {}").format(ident, sql.Identifier(owner)),
            f"{where}: cannot keep its owner {owner}",
        )
    wanted = [g for g in grants if g.column is None or g.column in columns]
    new = read(cur, schema, table)[1]
    if set(new) != set(wanted):
        # The new table holds its owner's default privileges (and ALTER DEFAULT PRIVILEGES'): cleared first.
        for grantor in dict.fromkeys(g.grantor for g in new):
            grantees = dict.fromkeys(g.grantee for g in new if g.grantor == grantor)
            names = sql.SQL(", ").join(sql.Identifier(g) if g else sql.SQL("public") for g in grantees)
            _as(cur, me if grantor == owner else grantor, where)
            _run(
                cur,
                sql.SQL("revoke all on table {} from {} cascade").format(ident, names),
                f"{where}: cannot clear the new table's default privileges",
            )
        # Then the old grants, in order, each after the grant option it was made with.
        held: set[tuple[str | None, str | None, str]] = set()
        # The owner's grant of a grant option to the load's role last: held, PostgreSQL would record the owner's
        # later grants as made by the load's role, not the owner (review: a loader in the owner's role).
        pending = sorted(wanted, key=lambda g: g.grantor == owner and g.grantee == me)
        while pending:
            ready = [g for g in pending if g.grantor == owner or _option(g, g.grantor) & held] or pending
            for grant in ready:  # none ready (cannot be): PostgreSQL ignores the grant, and the check below fails
                _as(cur, me if grant.grantor == owner else grant.grantor, where)
                _run(cur, _grant_statement(ident, grant), f"{where}: cannot keep the grant of {grant}")
                if grant.grantable:
                    held |= _option(grant, grant.grantee)
            pending = [g for g in pending if g not in ready]
        _as(cur, me, where)
    kept = read(cur, schema, table)
    if kept[0] != owner or set(kept[1]) != set(wanted):
        lost = ", ".join(str(g) for g in wanted if g not in kept[1]) or "none"
        added = ", ".join(str(g) for g in kept[1] if g not in wanted) or "none"
        raise PrivilegesNotKept(
            f"{where}: the replaced table's owner ({owner}) and privileges were not kept exactly"
            f" (owner now {kept[0]}; grants lost: {lost}; grants added: {added})"
        )


@contextlib.contextmanager
def kept_across_swap(conn, schema: str, table: str) -> Iterator[None]:
    """What a publish owes the readers of ``schema.table``: each grant on it, given again to the table that replaces
    it inside the block, beside the new table's own (its owner's default privileges stay). The publishing role owns
    the new table and makes the grants: one another grantor made is kept as the owner's, and the old owner is not
    restored (review: restoring either exactly failed every publish where the role could not, and revoked what
    ALTER DEFAULT PRIVILEGES gave)."""
    with conn.cursor() as cur:
        old = read(cur, schema, table)
    yield
    if old is None:
        return
    ident = sql.Identifier(schema, table)
    with conn.cursor() as cur:
        me = cur.execute("select current_user").fetchone()[0]
        columns = {c.name for c in cur.execute(sql.SQL("select * from {} limit 0").format(ident)).description}
        held = {(g.column, g.grantee, g.privilege, g.grantable) for g in read(cur, schema, table)[1]}
        for grant in old[1]:
            again = Grant(grant.column, me, grant.grantee, grant.privilege, grant.grantable)
            if grant.grantee == me or (grant.column and grant.column not in columns):
                continue  # the owner's own; a column the new table no longer has
            if (again.column, again.grantee, again.privilege, again.grantable) not in held:
                cur.execute(_grant_statement(ident, again))


def _option(grant: Grant, role: str | None) -> set[tuple[str | None, str | None, str]]:
    """The grant options that let ``role`` grant ``grant``'s privilege (on its column: the table's also does)."""
    return {(None, role, grant.privilege), (grant.column, role, grant.privilege)}


def _grant_statement(ident: sql.Composable, grant: Grant) -> sql.Composed:
    return sql.SQL("grant {privilege}{column} on table {table} to {grantee}{option}").format(
        privilege=sql.SQL(grant.privilege),
        column=sql.SQL(" ({})").format(sql.Identifier(grant.column)) if grant.column else sql.SQL(""),
        table=ident,
        grantee=sql.Identifier(grant.grantee) if grant.grantee else sql.SQL("public"),
        option=sql.SQL(" with grant option" if grant.grantable else ""),
    )


def _as(cur, role: str, where: str) -> None:
    """Act as ``role`` until the transaction ends or the next call."""
    if cur.execute("select current_user").fetchone()[0] != role:
        _run(
            cur,
            sql.SQL("set local role {}").format(sql.Identifier(role)),
            f"{where}: cannot act as role {role}, to keep its grants",
        )


def _run(cur, statement: sql.Composable, what: str) -> None:
    try:
        cur.execute(statement)
    except psycopg.Error as exc:
        raise PrivilegesNotKept(f"{what}: {exc.diag.message_primary or exc}") from exc
