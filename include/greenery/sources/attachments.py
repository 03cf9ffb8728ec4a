"""What a raw table holds besides its rows and grants, made again on the table a load replaces it with.

A load swaps in new tables (sources/load.py), and comments, row-level security and its policies, triggers,
constraints, indexes, column defaults and settings belong to the old table: dropped with it, without a word (review:
a policy that let a role read only its own rows was gone after the next load, while the role's ``select`` grant was
kept, so the role read every row). Each is read before the swap and made again after it, and a load whose rows break
one (a primary key, a check) stops, naming it. What a load cannot make again (a view or another table's foreign key
on the table, a rule, a publication, a sequence it owns, its place in a parent table, a column the files do not have,
an identity or generated column) stops the load before it changes anything, naming each. A column's type and
collation are the files' (sources/schema.py), whatever the old table's were; a constraint made ``not valid`` is made
again so, and so does not check the loaded rows (nor did it check the old table's).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import psycopg
from psycopg import sql


class AttachmentsNotKept(RuntimeError):
    """A raw table holds something the load cannot make again on its replacement; nothing was changed."""


@dataclass
class Attachments:
    """What makes a table's attachments again, each step as (what it is, statement), in the order they are made."""

    table: str
    # (name, shape, statement) of each index no constraint makes. The load makes some indexes itself
    # (sources/schema.py): an old index of the same shape is that one, given the old name, not a second one.
    indexes: list[tuple[str, str, sql.Composable]] = field(default_factory=list)
    statements: list[tuple[str, sql.Composable]] = field(default_factory=list)
    # Made once every replaced table is in place: they may point at one another.
    foreign_keys: list[tuple[str, sql.Composable]] = field(default_factory=list)


_TABLE = """
select c.oid, c.relrowsecurity, c.relforcerowsecurity, c.relreplident, c.relpersistence = 'u',
    c.reloptions, (select t.reloptions from pg_class t where t.oid = c.reltoastrelid),
    obj_description(c.oid, 'pg_class')
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where n.nspname = %(schema)s and c.relname = %(table)s and c.relkind in ('r', 'p')
"""

# A column's storage only when it is not its type's default (which the new column has).
_COLUMNS = """
select a.attname, col_description(a.attrelid, a.attnum), a.attnotnull, pg_get_expr(d.adbin, d.adrelid),
    coalesce(a.attstattarget, -1), a.attoptions, a.attidentity <> '' or a.attgenerated <> '',
    case when a.attstorage <> t.typstorage then a.attstorage end, nullif(a.attcompression, '')
from pg_attribute a join pg_type t on t.oid = a.atttypid
left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
where a.attrelid = %(oid)s and a.attnum > 0 and not a.attisdropped
order by a.attnum
"""

_PARENTS = """
select i.inhparent::regclass::text, c.relispartition from pg_inherits i join pg_class c on c.oid = i.inhrelid
where i.inhrelid = %(oid)s order by i.inhseqno
"""

# What depends on the table and is neither made again here nor part of it (its row type, its TOAST table): a view
# (its rule), a foreign key or policy of a table the load keeps, a rule, a publication, a sequence it owns.
_CANNOT_KEEP = """
select distinct case
    when d.classid = 'pg_rewrite'::regclass and r.rulename = '_RETURN'
        then (case v.relkind when 'm' then 'materialized view ' else 'view ' end) || v.oid::regclass::text
    else pg_describe_object(d.classid, d.objid, d.objsubid)
end
from pg_depend d
left join pg_rewrite r on d.classid = 'pg_rewrite'::regclass and r.oid = d.objid
left join pg_class v on v.oid = r.ev_class
where d.refclassid = 'pg_class'::regclass and d.refobjid = %(oid)s and d.deptype in ('n', 'a')
    and not (d.classid = 'pg_policy'::regclass
        and exists (select from pg_policy p where p.oid = d.objid and p.polrelid = any(%(replaced)s::oid[])))
    and not (d.classid = 'pg_trigger'::regclass
        and exists (select from pg_trigger t where t.oid = d.objid and t.tgrelid = any(%(replaced)s::oid[])))
    and not (d.classid = 'pg_attrdef'::regclass
        and exists (select from pg_attrdef a where a.oid = d.objid and a.adrelid = %(oid)s))
    and not (d.classid = 'pg_statistic_ext'::regclass
        and exists (select from pg_statistic_ext s where s.oid = d.objid and s.stxrelid = %(oid)s))
    and not (d.classid = 'pg_class'::regclass
        and exists (select from pg_index i where i.indexrelid = d.objid and i.indrelid = %(oid)s))
    and not (d.classid = 'pg_constraint'::regclass
        and exists (select from pg_constraint c where c.oid = d.objid and c.conrelid = any(%(replaced)s::oid[])))
order by 1
"""

_POLICIES = """
select p.policyname, p.permissive, p.roles, p.cmd, p.qual, p.with_check, obj_description(o.oid, 'pg_policy')
from pg_policies p join pg_policy o on o.polrelid = %(oid)s and o.polname = p.policyname
where p.schemaname = %(schema)s and p.tablename = %(table)s order by p.policyname
"""

_TRIGGERS = """
select tgname, pg_get_triggerdef(oid), tgenabled, obj_description(oid, 'pg_trigger') from pg_trigger
where tgrelid = %(oid)s and not tgisinternal order by tgname
"""

# Not-null is the column's (attnotnull) before PostgreSQL 18, a constraint ('n') from it on: made as the column's. A
# constraint trigger ('t') is made again as a trigger.
_CONSTRAINTS = """
select conname, contype, pg_get_constraintdef(oid), obj_description(oid, 'pg_constraint') from pg_constraint
where conrelid = %(oid)s and contype not in ('n', 't') order by contype = 'f', conname
"""

# Every index, with whether the table's own constraint makes it (a foreign key's conindid is the index it points at,
# on the other table). The shape is the definition without the index's name.
_INDEXES = """
select c.relname, replace(pg_get_indexdef(i.indexrelid), ' INDEX ' || quote_ident(c.relname) || ' ON ', ' INDEX ON '),
    pg_get_indexdef(i.indexrelid), i.indisclustered, i.indisreplident, obj_description(c.oid, 'pg_class'),
    exists (select from pg_constraint k where k.conindid = i.indexrelid and k.conrelid = i.indrelid
        and k.contype in ('p', 'u', 'x'))
from pg_index i join pg_class c on c.oid = i.indexrelid
where i.indrelid = %(oid)s
order by c.relname
"""

_STATISTICS = """
select s.stxname, pg_get_statisticsobjdef(s.oid), coalesce(s.stxstattarget, -1), pg_get_userbyid(s.stxowner),
    obj_description(s.oid, 'pg_statistic_ext')
from pg_statistic_ext s where s.stxrelid = %(oid)s order by s.stxname
"""

_STORAGE = {"p": "plain", "e": "external", "m": "main", "x": "extended"}
_COMPRESSION = {"p": "pglz", "l": "lz4"}

_COMMANDS = {"ALL": "all", "SELECT": "select", "INSERT": "insert", "UPDATE": "update", "DELETE": "delete"}
_TRIGGER_STATES = {"D": "disable trigger", "R": "enable replica trigger", "A": "enable always trigger"}


def read_all(cur, schema: str, tables: Mapping[str, Collection[str]], lock: bool = True) -> list[Attachments]:
    """What each table of ``schema`` named in ``tables`` (with the columns its replacement has) holds that its
    replacement must hold too; the tables that do not exist yet hold nothing. ``lock``: first take the lock the drop
    will take, so that nothing another session commits (a policy, a comment) falls between this read and the drop.

    Raises one AttachmentsNotKept naming every part of every table that the load could not make again."""
    replaced = replaced_oids(cur, schema, tables)
    if lock and replaced:
        names = cur.execute("select oid::regclass::text from unnest(%s::oid[]) as oid", (replaced,)).fetchall()
        cur.execute(
            sql.SQL("lock table {} in access exclusive mode").format(sql.SQL(", ").join(sql.SQL(n) for (n,) in names))
        )
    kept, refused = [], []
    for table, columns in tables.items():
        try:
            if (found := _read(cur, schema, table, columns, replaced)) is not None:
                kept.append(found)
        except AttachmentsNotKept as exc:
            refused.append(str(exc))
    if refused:
        raise AttachmentsNotKept("; ".join(refused) + " (remove them before the load and make them again after)")
    return kept


def _read(cur, schema: str, table: str, columns: Collection[str], replaced: Collection[int]) -> Attachments | None:
    """:func:`read_all` for one table; ``replaced``: the oids of every table the load replaces (their foreign keys,
    policies and triggers that name one another are kept)."""
    found = cur.execute(_TABLE, {"schema": schema, "table": table}).fetchone()
    if found is None:
        return None
    oid, row_security, forced, replica_identity, unlogged, options, toast_options, comment = found
    params = {"oid": oid, "schema": schema, "table": table, "replaced": list(replaced)}
    cannot = [what for (what,) in cur.execute(_CANNOT_KEEP, params).fetchall()]
    for parent, partition in cur.execute(_PARENTS, params).fetchall():
        cannot.append(f"its place in table {parent} ({'a partition of it' if partition else 'it inherits from it'})")
    kept = Attachments(table)
    cannot += _columns(cur, kept, sql.Identifier(schema, table), columns, params)
    if cannot:
        where = f"{schema}.{table}"
        raise AttachmentsNotKept(
            f"{where} holds what a load would drop with it and cannot make again: {', '.join(cannot)}"
        )
    ident, add = sql.Identifier(schema, table), kept.statements.append
    for name, kind, definition, note in cur.execute(_CONSTRAINTS, params).fetchall():
        steps = kept.foreign_keys if kind == "f" else kept.statements
        named = sql.SQL("alter table {} add constraint {} ").format(ident, sql.Identifier(name))
        steps.append((f"constraint {name}", named + sql.SQL(definition)))
        if note is not None:
            comment_on = sql.SQL("comment on constraint {} on {} is {}").format(sql.Identifier(name), ident, note)
            steps.append((f"constraint {name}'s comment", comment_on))
    for name, shape, definition, clustered, replica, note, by_constraint in cur.execute(_INDEXES, params).fetchall():
        index = sql.Identifier(schema, name)
        if not by_constraint:
            kept.indexes.append((name, shape, sql.SQL(definition)))
        if clustered:
            add(
                (
                    f"index {name} as the table's clustering",
                    sql.SQL("alter table {} cluster on {}").format(ident, sql.Identifier(name)),
                )
            )
        if replica and replica_identity == "i":
            add(
                (
                    "replica identity",
                    sql.SQL("alter table {} replica identity using index {}").format(ident, sql.Identifier(name)),
                )
            )
        if note is not None:
            add((f"index {name}'s comment", sql.SQL("comment on index {} is {}").format(index, note)))
    for name, definition, target, owner, note in cur.execute(_STATISTICS, params).fetchall():
        statistics, what = sql.Identifier(schema, name), f"extended statistics {name}"
        add((what, sql.SQL(definition)))
        if target >= 0:
            add((f"{what}' target", sql.SQL("alter statistics {} set statistics {}").format(statistics, target)))
        add((f"{what}' owner", sql.SQL("alter statistics {} owner to {}").format(statistics, sql.Identifier(owner))))
        if note is not None:
            add((f"{what}' comment", sql.SQL("comment on statistics {} is {}").format(statistics, note)))
    for name, definition, state, note in cur.execute(_TRIGGERS, params).fetchall():
        trigger = sql.Identifier(name)
        add((f"trigger {name}", sql.SQL(definition)))
        if state in _TRIGGER_STATES:
            toggle = sql.SQL("alter table {} {} {}").format(ident, sql.SQL(_TRIGGER_STATES[state]), trigger)
            add((f"trigger {name}'s state", toggle))
        if note is not None:
            add(
                (f"trigger {name}'s comment", sql.SQL("comment on trigger {} on {} is {}").format(trigger, ident, note))
            )
    for name, permissive, roles, command, using, check, note in cur.execute(_POLICIES, params).fetchall():
        policy = sql.Identifier(name)
        to = sql.SQL(", ").join(sql.SQL("public") if r == "public" else sql.Identifier(r) for r in roles)
        statement = sql.SQL("create policy {} on {} as {} for {} to {}").format(
            policy, ident, sql.SQL(permissive.lower()), sql.SQL(_COMMANDS[command]), to
        )
        if using is not None:
            statement += sql.SQL(" using (" + using + ")")
        if check is not None:
            statement += sql.SQL(" with check (" + check + ")")
        add((f"policy {name}", statement))
        if note is not None:
            add((f"policy {name}'s comment", sql.SQL("comment on policy {} on {} is {}").format(policy, ident, note)))
    if row_security:
        add(("row-level security", sql.SQL("alter table {} enable row level security").format(ident)))
    if forced:
        add(("row-level security for its owner", sql.SQL("alter table {} force row level security").format(ident)))
    if replica_identity in ("f", "n"):
        identity = sql.SQL("full" if replica_identity == "f" else "nothing")
        add(("replica identity", sql.SQL("alter table {} replica identity ").format(ident) + identity))
    if unlogged:
        add(("unlogged", sql.SQL("alter table {} set unlogged").format(ident)))
    settings = [*(options or ()), *(f"toast.{option}" for option in toast_options or ())]
    if settings:
        add(("storage parameters", sql.SQL("alter table {} set ").format(ident) + sql.SQL(f"({', '.join(settings)})")))
    if comment is not None:
        add(("comment", sql.SQL("comment on table {} is {}").format(ident, comment)))
    return kept


def _columns(cur, kept: Attachments, ident: sql.Identifier, columns: Collection[str], params: dict) -> list[str]:
    """Add the steps that make the columns' defaults, constraints, settings and comments again; return what cannot
    be made again."""
    cannot = []
    for row in cur.execute(_COLUMNS, params).fetchall():
        name, note, not_null, default, target, options, derived, storage, compression = row
        if name not in columns:
            cannot.append(f"column {name} (the files do not have it: its values would be lost)")
            continue
        if derived:
            cannot.append(f"column {name} (an identity or generated column)")
        column = sql.Identifier(name)
        alter = sql.SQL("alter table {} alter column {} ").format(ident, column)
        steps = [
            ("default", default is not None, sql.SQL(f"set default {default}")),
            ("not-null constraint", not_null, sql.SQL("set not null")),
            ("statistics target", target >= 0, sql.SQL("set statistics {}").format(target)),
            ("options", bool(options), sql.SQL(f"set ({', '.join(options or ())})")),
            ("storage", storage is not None, sql.SQL(f"set storage {_STORAGE.get(storage)}")),
            ("compression", compression is not None, sql.SQL(f"set compression {_COMPRESSION.get(compression)}")),
        ]
        kept.statements.extend((f"column {name}'s {what}", alter + step) for what, wanted, step in steps if wanted)
        if note is not None:
            on = sql.SQL("comment on column {}.{} is {}").format(ident, column, note)
            kept.statements.append((f"column {name}'s comment", on))
    return cannot


def make_again(cur, schema: str, kept: Collection[Attachments]) -> None:
    """Make ``kept`` (:func:`read_all`, one per replaced table, each now in place) on the new tables: the indexes
    first, foreign keys last (they may point at another replaced table).

    Raises AttachmentsNotKept naming the table, the part and PostgreSQL's reason (a loaded row breaks a key)."""
    for attachments in kept:
        where = f"{schema}.{attachments.table}"
        _make_indexes(cur, schema, attachments, where)
        for what, statement in attachments.statements:
            _run(cur, statement, where, what)
    for attachments in kept:
        for what, statement in attachments.foreign_keys:
            _run(cur, statement, f"{schema}.{attachments.table}", what)


def _make_indexes(cur, schema: str, attachments: Attachments, where: str) -> None:
    """The old indexes on the new table. One of the shape of an index the load made is that index, renamed; the
    load's others keep their names, or take another for an old index of another shape that had one of them."""
    [oid] = replaced_oids(cur, schema, [attachments.table])
    made = {shape: name for name, shape, *_ in cur.execute(_INDEXES, {"oid": oid}).fetchall()}
    aside = {shape: f"greenery_load_{oid}_{i}" for i, shape in enumerate(made)}  # no other index is so named
    for shape, own in made.items():  # out of the way first: an old index may want the name of another shape's
        _rename(cur, schema, own, aside[shape], where)
    for name, shape, statement in attachments.indexes:
        if shape in made:
            _rename(cur, schema, aside[shape], name, where)
            del made[shape]
        else:
            _run(cur, statement, where, f"index {name}")
    for shape, own in made.items():  # the load's own that no old index was: its name, unless taken meanwhile
        free, n = own, 0
        while cur.execute("select to_regclass(%s)", (sql.Identifier(schema, free).as_string(cur),)).fetchone()[0]:
            n += 1
            free = f"{own[:60]}{n}"
        _rename(cur, schema, aside[shape], free, where)


def _rename(cur, schema: str, index: str, to: str, where: str) -> None:
    if index != to:
        rename = sql.SQL("alter index {} rename to {}").format(sql.Identifier(schema, index), sql.Identifier(to))
        _run(cur, rename, where, f"index {to}")


def replaced_oids(cur, schema: str, tables: Collection[str]) -> list[int]:
    """The oids of the tables of ``schema`` among ``tables`` (those a load replaces)."""
    found = cur.execute(
        "select c.oid from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = %s and c.relname = any(%s) and c.relkind in ('r', 'p')",
        (schema, list(tables)),
    )
    return [oid for (oid,) in found.fetchall()]


def _run(cur, statement: sql.Composable, where: str, what: str) -> None:
    try:
        cur.execute(statement)
    except psycopg.Error as exc:
        detail = f" ({exc.diag.message_detail})" if exc.diag.message_detail else ""
        # Integrity and data errors are the loaded rows'; any other (a missing privilege, say) is the statement's.
        how = "kept on the loaded rows" if (exc.sqlstate or "").startswith(("22", "23")) else "made again"
        raise AttachmentsNotKept(
            f"{where}: its {what} cannot be {how}: {exc.diag.message_primary or exc}{detail}"
        ) from exc
