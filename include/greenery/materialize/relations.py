"""Naming and inspecting relations in PostgreSQL: identifiers, existence, columns, where a ref resolves."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from psycopg import sql

from greenery.errors import RetryCannotFix
from greenery.project.models import Model

# Storage options of the tables a run creates and drops again, or replaces whole the next day. Autovacuum
# (on by default) starts on a table once about a thousand rows are inserted; a drop, a rename or a move to
# another schema must then wait for it: PostgreSQL cancels autovacuum for the waiter only after
# deadlock_timeout (1 s). That was 1.00 s per table in the publish of a scale-1000 run (2026-12-01, 9.5 s of it).
# The build analyzes its tables itself.
NO_AUTOVACUUM = sql.SQL("with (autovacuum_enabled = false)")


def replaced_whole(model: Model) -> bool:
    """Whether every run builds the model's table whole and publish swaps it in (nothing updates it afterwards):
    such a table keeps NO_AUTOVACUUM; a table merged into (incremental, daily, snapshot) gets autovacuum."""
    return model.materialized == "table"


def ident(relation: str) -> sql.Identifier:
    """``schema.table`` as a quoted identifier."""
    schema, _, table = relation.partition(".")
    return sql.Identifier(schema, table)


def exists(conn, relation: str) -> bool:
    found = conn.execute("select to_regclass(%s)", (ident(relation).as_string(conn),)).fetchone()
    return found[0] is not None


def delta_relation(relation: str) -> str:
    """Where an incremental build keeps the rows it recomputed (``<schema>.<model>__delta``), beside its merged view."""
    return f"{relation}__delta"


class MergedViewDropped(RuntimeError, RetryCannotFix):
    """Another run published an incremental model whole while this run's build merged into it."""


def resolver(conn, models: Mapping[str, Model], schema_of: Mapping[str, str] | None) -> Callable[[str], str]:
    """Name -> relation: the run's build schema when the model is there, else the published table.

    Falling back lets a single cleared task rebuild from what is published when its run's build
    schemas were already published or cleaned up. Not for an incremental model whose delta is there without its
    merged view: another run's publish of it whole (a full refresh) dropped the view (build_schemas.drop_views_on),
    and this run's models would read that run's table for their own, green (review): refused.
    """
    schema_of = dict(schema_of or {})

    def relation(name: str) -> str:
        model = models[name]
        build_schema = schema_of.get(model.layer)
        if build_schema is None:
            return model.relation
        built = f"{build_schema}.{name}"
        if exists(conn, built):
            return built
        if model.materialized == "incremental" and exists(conn, delta_relation(built)):
            raise MergedViewDropped(
                f"{built}, this run's {model.relation} (its recomputed rows merged into the published table), was"
                f" dropped by another run publishing {model.relation} whole (a full_refresh) while this run was"
                " building: its models would read that run's rows for this run's. Clear the whole run: it builds"
                " again on what is published now"
            )
        return model.relation

    return relation


def columns(conn, relation: str) -> list[tuple[str, int]] | None:
    """(name, type oid) of a table's columns in order, or None when it does not exist."""
    typed = column_types(conn, relation)
    return [(name, oid) for name, oid, _ in typed] if typed else None


def column_types(conn, relation: str) -> list[tuple[str, int, int]] | None:
    """(name, type oid, type modifier) of a table's columns in order, or None when it does not exist. The modifier
    holds a type's precision and length (``numeric(8,3)``, ``varchar(20)``; -1 for none)."""
    rows = conn.execute(
        "select attname, atttypid::int, atttypmod from pg_attribute where attrelid = to_regclass(%s)"
        " and attnum > 0 and not attisdropped order by attnum",
        (ident(relation).as_string(conn),),
    ).fetchall()
    return [(name, oid, typmod) for name, oid, typmod in rows] or None


class ColumnsChanged(ValueError):
    """A table that keeps earlier days cannot take rows whose columns were removed or changed type."""


def append_new_columns(conn, target: str, source: str) -> list[str]:
    """Give ``target`` the columns of ``source`` it lacks (dbt's on_schema_change 'append_new_columns').

    For tables that keep earlier days (daily partitions): a column added to the model appears in them,
    NULL on the days built before it, instead of the day's insert failing. A column removed or retyped
    raises ColumnsChanged naming it: dropping history is a decision for a person. Returns ``source``'s
    column names in order, for an insert that names them.
    """
    query = (
        "select attname, format_type(atttypid, atttypmod) from pg_attribute where attrelid = to_regclass(%s)"
        " and attnum > 0 and not attisdropped order by attnum"
    )
    built = conn.execute(query, (ident(source).as_string(conn),)).fetchall()
    published = dict(conn.execute(query, (ident(target).as_string(conn),)).fetchall())
    removed = [name for name in published if name not in dict(built)]
    retyped = [f"{name} {published[name]} -> {kind}" for name, kind in built if published.get(name, kind) != kind]
    if removed or retyped:
        raise ColumnsChanged(
            f"{target} keeps earlier days, and the model's columns changed since they were written"
            + (f"; removed: {', '.join(removed)}" if removed else "")
            + (f"; changed type: {', '.join(retyped)}" if retyped else "")
            + f". Migrate {target} by hand (alter table), or drop it and rerun the days it should hold."
        )
    for name, kind in built:
        if published and name not in published:
            conn.execute(sql.SQL("alter table {} add column {} " + kind).format(ident(target), sql.Identifier(name)))
    return [name for name, _ in built]


def drop(cur, relation: str) -> None:
    """Drop ``relation``, a table or a view: DROP VIEW IF EXISTS fails on a table, and the other way round."""
    kind = cur.execute(
        "select relkind from pg_class where oid = to_regclass(%s)", (ident(relation).as_string(cur),)
    ).fetchone()
    if kind is not None:
        statement = "drop view {}" if kind[0] == "v" else "drop table {}"
        cur.execute(sql.SQL(statement).format(ident(relation)))


def create_indexes(cur, model: Model, relation: str) -> None:
    for cols in model.indexes:
        cur.execute(
            sql.SQL("create index on {} ({})").format(ident(relation), sql.SQL(", ").join(map(sql.Identifier, cols)))
        )
