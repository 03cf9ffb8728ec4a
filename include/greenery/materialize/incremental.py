"""Incremental models: the delta a run recomputes, merging it over the published table, and the merged view.

A run recomputes the rows from ``incremental_since`` on (the run's day minus the model's lookback) plus
whatever its SQL selects by key; those rows (the *delta*) replace the published rows with the same key
or with ``incremental_column >= since``.
"""

from __future__ import annotations

import datetime as dt

from psycopg import sql

from greenery.materialize import relations
from greenery.materialize.relations import ident
from greenery.project.models import Model


def delta_relation(relation: str) -> str:
    """Where an incremental build keeps the rows it recomputed (``<schema>.<model>__delta``)."""
    return f"{relation}__delta"


def _keys_match(model: Model) -> sql.Composed:
    """``d.k = t.k and ...`` over the model's key: a delta row ``d`` replaces a published row ``t``."""
    return sql.SQL(" and ").join(sql.SQL("d.{k} = t.{k}").format(k=sql.Identifier(k)) for k in model.unique_key)


def merge_statements(model: Model, target: str, delta: str, since: dt.datetime) -> list[tuple[sql.Composed, tuple]]:
    """Replace ``target``'s rows that ``delta`` recomputes: from ``since`` on, or with a key in the delta."""
    column = sql.Identifier(model.incremental_column)
    # Two deletes, not one with OR, so each can use its index (column range, then key lookups).
    return [
        (sql.SQL("delete from {} as t where t.{} >= %s").format(ident(target), column), (since,)),
        (
            sql.SQL("delete from {} as t using {} as d where {}").format(
                ident(target), ident(delta), _keys_match(model)
            ),
            (),
        ),
        (sql.SQL("insert into {} select * from {}").format(ident(target), ident(delta)), ()),
    ]


def merged_view(model: Model, view: str, delta: str, since: dt.datetime) -> sql.Composed:
    """The published table with this run's delta merged in, as downstream models of the run see it."""
    return sql.SQL(
        "create view {view} as select * from {published} as t"
        " where (t.{col} < {since} or t.{col} is null) and not exists (select from {delta} as d where {keys})"
        " union all select * from {delta}"
    ).format(
        view=ident(view),
        published=ident(model.relation),
        col=sql.Identifier(model.incremental_column),
        since=sql.Literal(since),
        delta=ident(delta),
        keys=_keys_match(model),
    )


def drop_build(cur, target: str) -> None:
    """Drop what an earlier attempt at ``target`` left in its build schema (a cleared task reruns there).

    That is a merge view and its delta after an incremental build, a table after a whole one.
    """
    relations.drop(cur, target)
    cur.execute(sql.SQL("drop table if exists {}").format(ident(delta_relation(target))))
