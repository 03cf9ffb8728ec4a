"""What a raw table holds besides its rows and grants, made again on the table a load replaces it with.

A load swaps in new tables (sources/load.py), and comments, row-level security and its policies, triggers,
constraints, indexes and settings belong to the old table: dropped with it, without a word (review: a policy that let
a role read only its own rows was gone after the next load, while the role's ``select`` grant was kept). Each is read
before the swap (under the lock the drop takes) and made again after it; what cannot be made again stops the load
before it reads a file, naming each (README.md, `load-raw`, lists both, and what is not kept).

Order: per table, the old indexes (the load's own set aside first, for every table, as an old index or constraint of
any table may want a name), then the columns' settings, constraints (their indexes), what names an index (clustering,
replica identity), statistics, triggers, policies, the table's settings; foreign keys last, once every replaced table
is in place; the load's own indexes that no old one was get their names last.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from greenery.sources.schema import way_out


class AttachmentsNotKept(RuntimeError):
    """A raw table holds something the load cannot make again on its replacement; nothing was changed."""


@dataclass
class Attachments:
    """What makes a table's attachments again: each step as (what it is, statement), in the order they are made."""

    table: str
    # (name, shape, statement) of each valid index no constraint makes. The load makes some indexes itself
    # (sources/schema.py): an old index of the same shape is that one, given the old name, not a second one.
    indexes: list[tuple[str, str, sql.Composable]] = field(default_factory=list)
    steps: list[tuple[str, sql.Composable]] = field(default_factory=list)
    # Made once every replaced table is in place: they may point at one another.
    foreign_keys: list[tuple[str, sql.Composable]] = field(default_factory=list)


_TABLE = """
select c.relname, c.oid, c.reltype, c.relkind = 'p', c.relrowsecurity, c.relforcerowsecurity, c.relreplident,
    c.relpersistence = 'u', c.reloptions, (select t.reloptions from pg_class t where t.oid = c.reltoastrelid),
    obj_description(c.oid, 'pg_class'), nullif(c.reloftype, 0)::regtype::text, obj_description(c.reltype, 'pg_type')
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where n.nspname = %(schema)s and c.relname = any(%(tables)s) and c.relkind in ('r', 'p')
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

# What depends on the table or its row type and is neither made again here nor part of it (its row type, its TOAST
# table): a view (its rule), a rule, a publication, a sequence it owns, a table inheriting from it, a foreign key,
# policy or trigger of a table the load does not replace, a function or column of its row type (or of an array of it).
_CANNOT_KEEP = """
select distinct case
    when d.classid = 'pg_rewrite'::regclass and r.rulename = '_RETURN'
        then (case v.relkind when 'm' then 'materialized view ' else 'view ' end) || v.oid::regclass::text
    when d.classid = 'pg_class'::regclass and d.objsubid = 0
        and exists (select from pg_inherits h where h.inhrelid = d.objid and h.inhparent = %(oid)s)
        then 'table ' || d.objid::regclass::text || ' (it inherits from this one)'
    else pg_describe_object(d.classid, d.objid, d.objsubid)
end
from pg_depend d
left join pg_rewrite r on d.classid = 'pg_rewrite'::regclass and r.oid = d.objid
left join pg_class v on v.oid = r.ev_class
where d.deptype in ('n', 'a')
    and (d.refclassid = 'pg_class'::regclass and d.refobjid = %(oid)s
        or d.refclassid = 'pg_type'::regclass
            and d.refobjid in (%(row_type)s, (select typarray from pg_type where oid = %(row_type)s)))
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

# Not-null is the column's (attnotnull) before PostgreSQL 18, a constraint ('n') from it on: made as the column's. A
# constraint trigger ('t') is made again as a trigger.
_CONSTRAINTS = """
select conname, contype, pg_get_constraintdef(oid), obj_description(oid, 'pg_constraint') from pg_constraint
where conrelid = %(oid)s and contype not in ('n', 't') order by contype = 'f', conname
"""

# Every index, and whether the table's own constraint makes it (a foreign key's conindid is the index it points at,
# on the other table). The shape is the definition without the index's name.
_INDEXES = """
select c.relname, replace(pg_get_indexdef(i.indexrelid), ' INDEX ' || quote_ident(c.relname) || ' ON ', ' INDEX ON '),
    pg_get_indexdef(i.indexrelid), i.indisvalid, i.indisclustered, i.indisreplident, obj_description(c.oid, 'pg_class'),
    exists (select from pg_constraint k where k.conindid = i.indexrelid and k.conrelid = i.indrelid
        and k.contype in ('p', 'u', 'x'))
from pg_index i join pg_class c on c.oid = i.indexrelid
where i.indrelid = %(oid)s
order by c.relname
"""

_STATISTICS = """
select s.stxnamespace::regnamespace::text, s.stxname, pg_get_statisticsobjdef(s.oid), coalesce(s.stxstattarget, -1),
    pg_get_userbyid(s.stxowner), obj_description(s.oid, 'pg_statistic_ext')
from pg_statistic_ext s where s.stxrelid = %(oid)s order by s.stxname
"""

_TRIGGERS = """select tgname, pg_get_triggerdef(oid), tgenabled, obj_description(oid, 'pg_trigger') from pg_trigger
where tgrelid = %(oid)s and not tgisinternal order by tgname"""

_POLICIES = """
select p.policyname, p.permissive, p.roles, p.cmd, p.qual, p.with_check, obj_description(o.oid, 'pg_policy')
from pg_policies p join pg_policy o on o.polrelid = %(oid)s and o.polname = p.policyname
where p.schemaname = %(schema)s and p.tablename = %(table)s order by p.policyname
"""

# What the load's role could not make again, known before it reads a file: a trigger's function it may not execute,
# a foreign key to a table (not replaced) it may not reference, statistics owned by a role it cannot act as.
_NOT_ALLOWED = """
select 'trigger ' || t.tgname || ' (the loading role may not execute its function ' || t.tgfoid::regproc::text || ')'
from pg_trigger t where t.tgrelid = %(oid)s and not t.tgisinternal and not has_function_privilege(t.tgfoid, 'execute')
union all
select 'constraint ' || k.conname || ' (the loading role may not reference ' || k.confrelid::regclass::text || ')'
from pg_constraint k where k.conrelid = %(oid)s and k.contype = 'f' and k.confrelid <> all(%(replaced)s::oid[])
    and not has_table_privilege(k.confrelid, 'references')
union all
select 'extended statistics ' || s.stxname || ' (owned by ' || pg_get_userbyid(s.stxowner)
    || ', a role the loading role cannot act as)'
from pg_statistic_ext s where s.stxrelid = %(oid)s and not pg_has_role(s.stxowner, 'set')
"""

_STORAGE = {"p": "plain", "e": "external", "m": "main", "x": "extended"}
_COMPRESSION = {"p": "pglz", "l": "lz4"}
_COMMANDS = {"ALL": "all", "SELECT": "select", "INSERT": "insert", "UPDATE": "update", "DELETE": "delete"}
_TRIGGER_STATES = {"D": "disable trigger", "R": "enable replica trigger", "A": "enable always trigger"}


def read_all(cur, schema: str, tables: Mapping[str, Collection[str]], check_only: bool = False) -> list[Attachments]:
    """What each table of ``schema`` named in ``tables`` (with the columns its replacement has) holds that its
    replacement must hold too; the tables that do not exist yet hold nothing. First it takes the lock the drop will
    take, so that nothing another session commits (a policy, a comment) falls between this read and the drop.
    ``check_only``: no lock, and only what would stop the load is read (the check before the files are read).

    Raises one AttachmentsNotKept naming every part of every table that the load could not make again."""
    params = {"schema": schema, "tables": list(tables)}
    if not check_only and (found := [name for name, *_ in cur.execute(_TABLE, params).fetchall()]):
        names = sql.SQL(", ").join(sql.Identifier(schema, table) for table in found)
        cur.execute(sql.SQL("lock table {} in access exclusive mode").format(names))
    rows = {row[0]: row[1:] for row in cur.execute(_TABLE, params).fetchall()}
    replaced = [row[0] for row in rows.values()]
    kept, refused = [], []
    for table, columns in tables.items():
        if table not in rows:
            continue
        try:
            kept.append(_read(cur, schema, table, columns, replaced, rows[table], check_only))
        except AttachmentsNotKept as exc:
            refused.append(str(exc))
    if refused:
        raise AttachmentsNotKept("; ".join(refused))
    return kept


def _read(
    cur, schema: str, table: str, columns: Collection[str], replaced: list[int], row: tuple, check_only: bool = False
) -> Attachments:
    """:func:`read_all` for one table, whose catalog ``row`` is read (``_TABLE``); ``replaced``: the oids of every
    table the load replaces (their foreign keys, policies and triggers naming one another are kept)."""
    oid, row_type, partitioned, row_security, forced, replica_identity, unlogged, *rest = row
    options, toast_options, note, of_type, type_note = rest
    params = {"oid": oid, "row_type": row_type, "schema": schema, "table": table, "replaced": replaced}
    cannot = [what for (what,) in cur.execute(_CANNOT_KEEP, params).fetchall()]
    cannot += [what for (what,) in cur.execute(_NOT_ALLOWED, params).fetchall()]
    if of_type is not None:
        cannot.append(f"its type {of_type} (a typed table; the load makes a plain one)")
    for parent, partition in cur.execute(_PARENTS, params).fetchall():
        cannot.append(f"its place in table {parent} ({'a partition of it' if partition else 'it inherits from it'})")
    if partitioned:
        cannot.append("its partitioning (the load makes a plain table)")
    kept, ident = Attachments(table), sql.Identifier(schema, table)
    cannot += _columns(cur, kept, ident, columns, params)
    if cannot:
        what = ", ".join(cannot)
        raise AttachmentsNotKept(f"{schema}.{table} holds what a load would drop with it and cannot make again: {what}")
    if check_only:
        return kept
    _constraints(cur, kept, ident, params)
    _indexes(cur, kept, schema, ident, replica_identity, params)
    _statistics(cur, kept, params)
    _triggers(cur, kept, ident, params)
    _policies(cur, kept, ident, params)
    add = kept.steps.append
    if row_security:
        add(("row-level security", sql.SQL("alter table {} enable row level security").format(ident)))
    if forced:
        add(("row-level security for its owner", sql.SQL("alter table {} force row level security").format(ident)))
    if replica_identity in ("f", "n"):
        identity = sql.SQL("full" if replica_identity == "f" else "nothing")
        add(("replica identity", sql.SQL("alter table {} replica identity ").format(ident) + identity))
    if unlogged:
        add(("unlogged", sql.SQL("alter table {} set unlogged").format(ident)))
    if settings := [*(options or ()), *(f"toast.{option}" for option in toast_options or ())]:
        add(("storage parameters", sql.SQL("alter table {} set ").format(ident) + sql.SQL(f"({', '.join(settings)})")))
    if note is not None:
        add(("comment", sql.SQL("comment on table {} is {}").format(ident, note)))
    if type_note is not None:
        add(("row type's comment", sql.SQL("comment on type {} is {}").format(ident, type_note)))
    return kept


def _columns(cur, kept: Attachments, ident: sql.Identifier, columns: Collection[str], params: dict) -> list[str]:
    """The steps that make the columns' defaults, not-null, settings and comments again; returns what cannot be."""
    cannot = []
    rows = cur.execute(_COLUMNS, params).fetchall()
    extra, absent = [r[0] for r in rows if r[0] not in columns], set(columns) - {r[0] for r in rows}
    for row in rows:
        name, note, not_null, default, target, options, derived, storage, compression = row
        if name not in columns:  # with the way out (user trial: a column renamed upstream was refused, naming none)
            renamed_from = sql.Identifier(*absent).as_string(cur) if len(extra) == len(absent) == 1 else None
            way = way_out(ident.as_string(cur), sql.Identifier(name).as_string(cur), renamed_from)
            cannot.append(f"column {name} (the files do not have it: its values would be lost; {way}, then load)")
            continue
        if derived:
            cannot.append(f"column {name} (an identity or generated column)")
        column = sql.Identifier(name)
        alter = sql.SQL("alter table {} alter column {} ").format(ident, column)
        steps = []
        if default is not None:
            steps.append(("default", sql.SQL(f"set default {default}")))
        if not_null:
            steps.append(("not-null constraint", sql.SQL("set not null")))
        if target >= 0:
            steps.append(("statistics target", sql.SQL("set statistics {}").format(target)))
        if options:
            steps.append(("options", sql.SQL(f"set ({', '.join(options)})")))
        if storage is not None:
            steps.append(("storage", sql.SQL(f"set storage {_STORAGE[storage]}")))
        if compression is not None:
            steps.append(("compression", sql.SQL(f"set compression {_COMPRESSION[compression]}")))
        kept.steps.extend((f"column {name}'s {what}", alter + step) for what, step in steps)
        if note is not None:
            on = sql.SQL("comment on column {}.{} is {}").format(ident, column, note)
            kept.steps.append((f"column {name}'s comment", on))
    return cannot


def _constraints(cur, kept: Attachments, ident: sql.Identifier, params: dict) -> None:
    for name, kind, definition, note in cur.execute(_CONSTRAINTS, params).fetchall():
        steps = kept.foreign_keys if kind == "f" else kept.steps
        named = sql.SQL("alter table {} add constraint {} ").format(ident, sql.Identifier(name))
        steps.append((f"constraint {name}", named + sql.SQL(definition)))
        if note is not None:
            on = sql.SQL("comment on constraint {} on {} is {}").format(sql.Identifier(name), ident, note)
            steps.append((f"constraint {name}'s comment", on))


def _indexes(cur, kept: Attachments, schema: str, ident: sql.Identifier, replica_identity: str, params: dict) -> None:
    """The valid indexes no constraint makes (``kept.indexes``); for every index, its comment and its part in the
    table's clustering and replica identity (steps after the constraints, which make their own indexes)."""
    for name, shape, definition, valid, clustered, replica, note, by_constraint in cur.execute(_INDEXES, params):
        if not valid:
            continue
        if not by_constraint:
            kept.indexes.append((name, shape, sql.SQL(definition)))
        index = sql.Identifier(name)
        if clustered:
            cluster = sql.SQL("alter table {} cluster on {}").format(ident, index)
            kept.steps.append((f"index {name} as its clustering", cluster))
        if replica and replica_identity == "i":
            using = sql.SQL("alter table {} replica identity using index {}").format(ident, index)
            kept.steps.append(("replica identity", using))
        if note is not None:
            on = sql.SQL("comment on index {} is {}").format(sql.Identifier(schema, name), note)
            kept.steps.append((f"index {name}'s comment", on))


def _statistics(cur, kept: Attachments, params: dict) -> None:
    found = cur.execute(_STATISTICS, params).fetchall()
    me = cur.execute("select current_user").fetchone()[0] if found else None
    for namespace, name, definition, target, owner, note in found:
        statistics, what = sql.Identifier(namespace, name), f"extended statistics {name}"
        kept.steps.append((what, sql.SQL(definition)))
        if target >= 0:
            set_target = sql.SQL("alter statistics {} set statistics {}").format(statistics, target)
            kept.steps.append((f"{what} (its target)", set_target))
        if owner != me:
            owned = sql.SQL("alter statistics {} owner to {}").format(statistics, sql.Identifier(owner))
            kept.steps.append((f"{what} (its owner)", owned))
        if note is not None:
            on = sql.SQL("comment on statistics {} is {}").format(statistics, note)
            kept.steps.append((f"{what} (its comment)", on))


def _triggers(cur, kept: Attachments, ident: sql.Identifier, params: dict) -> None:
    for name, definition, state, note in cur.execute(_TRIGGERS, params).fetchall():
        trigger = sql.Identifier(name)
        kept.steps.append((f"trigger {name}", sql.SQL(definition)))
        if state in _TRIGGER_STATES:
            toggle = sql.SQL("alter table {} {} {}").format(ident, sql.SQL(_TRIGGER_STATES[state]), trigger)
            kept.steps.append((f"trigger {name}'s state", toggle))
        if note is not None:
            on = sql.SQL("comment on trigger {} on {} is {}").format(trigger, ident, note)
            kept.steps.append((f"trigger {name}'s comment", on))


def _policies(cur, kept: Attachments, ident: sql.Identifier, params: dict) -> None:
    for name, permissive, roles, command, using, check, note in cur.execute(_POLICIES, params).fetchall():
        policy = sql.Identifier(name)
        to = sql.SQL(", ").join(sql.SQL("public") if r == "public" else sql.Identifier(r) for r in roles)
        statement = sql.SQL("create policy {} on {} as {} for {} to {}").format(
            policy, ident, sql.SQL(permissive.lower()), sql.SQL(_COMMANDS[command]), to
        )
        if using is not None:
            statement += sql.SQL(f" using ({using})")
        if check is not None:
            statement += sql.SQL(f" with check ({check})")
        kept.steps.append((f"policy {name}", statement))
        if note is not None:
            on = sql.SQL("comment on policy {} on {} is {}").format(policy, ident, note)
            kept.steps.append((f"policy {name}'s comment", on))


def make_again(cur, schema: str, kept: Collection[Attachments]) -> None:
    """Make ``kept`` (:func:`read_all`, one per replaced table, each now in place) on the new tables.

    Every table's own indexes (the load's) are set aside first, under names no index has: an old index or constraint
    of any table may want one of their names. Then each table's old indexes, constraints and the rest; then the
    foreign keys (they may point at another replaced table); last, the load's indexes that no old index was get their
    names back, or a free one. Raises AttachmentsNotKept naming the table, the part and PostgreSQL's reason."""
    aside = {attachments.table: _set_aside(cur, schema, attachments.table) for attachments in kept}
    for attachments in kept:
        where, made = f"{schema}.{attachments.table}", aside[attachments.table]
        for name, shape, statement in attachments.indexes:
            if (own := made.pop(shape, None)) is not None:
                _rename(cur, schema, own[1], name, where)
            else:
                _run(cur, statement, where, f"index {name}")
        for what, statement in attachments.steps:
            _run(cur, statement, where, what)
    for attachments in kept:
        for what, statement in attachments.foreign_keys:
            _run(cur, statement, f"{schema}.{attachments.table}", what)
    for table, made in aside.items():
        for own, temporary in made.values():
            free, n = own, 0
            while cur.execute("select to_regclass(%s)", (sql.Identifier(schema, free).as_string(cur),)).fetchone()[0]:
                n += 1
                free = f"{own[:60]}{n}"
            _rename(cur, schema, temporary, free, f"{schema}.{table}")


def _set_aside(cur, schema: str, table: str) -> dict[str, tuple[str, str]]:
    """Rename the new table's indexes (the load's own) out of the way; by shape: (own name, temporary name)."""
    oid = cur.execute("select to_regclass(%s)::oid", (sql.Identifier(schema, table).as_string(cur),)).fetchone()[0]
    made = {}
    for i, (name, shape, *_) in enumerate(cur.execute(_INDEXES, {"oid": oid}).fetchall()):
        made[shape] = (name, f"greenery_load_{oid}_{i}")  # the new table's oid: no other index is so named
        _rename(cur, schema, name, made[shape][1], f"{schema}.{table}", named=name)
    return made


def _rename(cur, schema: str, index: str, to: str, where: str, named: str | None = None) -> None:
    """Rename ``index`` to ``to``; ``named``: how an error names it (not by a temporary name)."""
    if index != to:
        rename = sql.SQL("alter index {} rename to {}").format(sql.Identifier(schema, index), sql.Identifier(to))
        _run(cur, rename, where, f"index {named or to}")


def postgres_says(exc: psycopg.Error) -> str:
    """PostgreSQL's message for ``exc``, and its detail (the key a row broke) in parentheses."""
    detail = f" ({exc.diag.message_detail})" if exc.diag.message_detail else ""
    return f"{exc.diag.message_primary or exc}{detail}"


def _run(cur, statement: sql.Composable, where: str, what: str) -> None:
    try:
        cur.execute(statement)
    except psycopg.Error as exc:
        # Integrity and data errors are the loaded rows'; any other (a missing privilege, say) is the statement's.
        how = "kept on the loaded rows" if (exc.sqlstate or "").startswith(("22", "23")) else "made again"
        raise AttachmentsNotKept(f"{where}: its {what} cannot be {how}: {postgres_says(exc)}") from exc
