"""What publish checks before it moves a run's build: that it takes back nothing another run published since.

A build is made with the run's clock (rows after it are in its future: quarantined, and deleted from the
incremental tables by the merge) and on the published snapshot as it was. Publishing it after a run with a
later clock published, or after another run stepped the snapshot on, would silently undo that run's work: a
green run, older tables. Each check refuses such a publish, naming the run and the remedy (clear the whole
run: it rebuilds with the later clock, on the snapshot as it is).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from psycopg import sql

from greenery import audit, config
from greenery.materialize import snapshot
from greenery.materialize.relations import ident
from greenery.project.models import Model
from greenery.project.render import CLOCK_SKEW
from greenery.sources import fingerprint

CLEAR_THE_RUN = "Nothing was published. Clear the whole run: it rebuilds with that run's clock."


class PublishError(RuntimeError):
    """A run's build cannot be published as asked (nothing built, or part of it lost); nothing changed. ``next_step``:
    the page's instruction where it is not "fix the cause, then clear the whole run" (user trial: the message said to
    clear validate with its downstream tasks, its page to fix the cause and clear the whole run)."""

    def __init__(self, message: str, next_step: str | None = None) -> None:
        super().__init__(message)
        self.next_step = next_step


def refuse_an_older_clock(conn, build: Any, clock: dt.datetime | None) -> None:
    """A run with a later clock (by more than the skew) than ``clock``, the build's, published after this build
    was prepared (audit.later_publish, the same run a new prepare would take its clock from).

    Found by review: a single model task cleared in an old run after later runs published rebuilt its tables
    with the old run's clock (a clear of the whole run takes the later one, see ``wap.prepare``), and a full
    refresh that published after a later run replaced whole tables built with an older clock: both green,
    both taking back the later run's rows (buyers' deliveries known by then, events after the old clock).
    """
    later = audit.later_publish(conn, build.key)
    if clock is not None and later is not None and later["run_time"] > clock + CLOCK_SKEW:
        raise PublishError(
            f"run {later['run_id']!r}, whose clock is {audit.utc_minute(later['run_time'])}, published at"
            f" {audit.utc_minute(later['published_at'])}, after run {build.run_id!r} started building with its clock"
            f" {audit.utc_minute(clock)}: publishing this build would take back what that run published (rows after"
            f" {audit.utc_minute(clock)} are in this build's future). {CLEAR_THE_RUN}"
        )


def _snapshot_builds(conn, models: Mapping[str, Model], build: Any, names: list[str]) -> dict[str, dict]:
    """What this build recorded of each snapshot of ``names`` (``history_kept``, ``snapshot_seen``), by name."""
    snapshots = [name for name in names if models[name].materialized == "snapshot"]
    if not snapshots:
        return {}
    rows = conn.execute(
        sql.SQL("select model, info from {} where key = %s and model = any(%s)").format(audit.table("build_models")),
        (build.key, snapshots),
    ).fetchall()
    recorded = dict(rows)
    return {name: recorded.get(name) or {} for name in snapshots}


def kept_snapshots(conn, models: Mapping[str, Model], build: Any, names: list[str]) -> set[str]:
    """The snapshots of ``names`` this build kept as they were (its step is before their latest): the published
    table as it was, which publish leaves alone and validate does not check against this run's models (review:
    after an order left raw, every backfill failed "a current version is an order staging has")."""
    return {name for name, info in _snapshot_builds(conn, models, build, names).items() if info.get("history_kept")}


def check_snapshots(conn, models: Mapping[str, Model], build: Any, names: list[str]) -> set[str]:
    """Refuse a snapshot built on a step that is no longer the published one (it would drop another run's step);
    return the snapshots this build kept as they were (its step is before their latest), for publish to leave
    alone: the copy it built is the published table as it was, and the latest day rerun since may have taken
    its step again (a new version, the same step): review found a backfill's copy dropping that version."""
    kept = set()
    for name, info in _snapshot_builds(conn, models, build, names).items():
        if info.get("history_kept"):
            kept.add(name)
            continue
        relation = models[name].relation
        now = snapshot.latest_step(conn, relation)
        # Compared as instants: the build wrote its step in UTC, this session may be in the database's time zone
        # (review: as strings, a warehouse whose TimeZone is not UTC could never publish a second day).
        seen = info.get("snapshot_seen")
        if now != (dt.datetime.fromisoformat(seen) if seen else None):
            # Review: "built it on None" when the build found no snapshot yet (a new warehouse, two days at once).
            built_on = f"the step of {seen}" if seen else "no snapshot (none was published yet)"
            raise PublishError(
                f"{relation} moved on to the step of {now} since run {build.run_id!r} built it on {built_on};"
                " nothing was published. Clear the whole run to build it again."
            )
        # The same step, another table: a rerun of that day took it again since (builds before this check: none),
        # on other raw than this build's base, or its step would be undone (two reruns of one day on the same raw).
        if "built_on" in info and snapshot.published_table(conn, relation) != info["built_on"]:
            built = f"{build.schema(models[name].layer)}.{name}"
            if snapshot.same_history(conn, relation, built, dt.datetime.fromisoformat(info["step"])):
                continue
            raise PublishError(
                f"{relation} was published again since run {build.run_id!r} built on it (a rerun of its latest day,"
                f" {now}, took that step again): publishing this build would put back the step as it first was and"
                " undo that rerun; nothing was published. Clear the whole run to build it on the snapshot as it is."
            )
    return kept


def refuse_taking_back(conn, model: Model, build: Any, clock: dt.datetime | None) -> None:
    """The merge deletes the published rows from ``since`` on: rows that a run with a later clock published after
    this build's clock (and its skew) would go, never to come back once out of the lookback. Overlapping runs
    within the skew of each other (:func:`refuse_an_older_clock` refuses the others)."""
    newest = conn.execute(
        sql.SQL("select max({}) from {}").format(sql.Identifier(model.incremental_column), ident(model.relation))
    ).fetchone()[0]
    newest = _as_time(newest) if newest is not None else None
    if clock is not None and newest is not None and newest > clock + CLOCK_SKEW:
        raise PublishError(
            f"{model.relation} holds rows up to {audit.utc_minute(newest)}, after run {build.run_id!r}'s clock"
            f" {audit.utc_minute(clock)} (a run that started later published them); publishing would delete them."
            f" {CLEAR_THE_RUN}"
        )


def _as_time(value: dt.date | dt.datetime) -> dt.datetime:
    """A date column's value as the start of its UTC day, to compare with a clock."""
    if isinstance(value, dt.datetime):
        return value
    return dt.datetime.combine(value, dt.time(), tzinfo=dt.UTC)


def raw_changed(conn, build: Any) -> str | None:
    """Which raw tables changed since the build was prepared, said in a sentence (None: unchanged, or not recorded).

    Its tables would mix old and new data; published, an incremental merge would also delete the rows another run
    read from the newer raw and published meanwhile (review: a late event a rerun published, gone for good)."""
    row = conn.execute(
        sql.SQL("select raw_fingerprint from {} where key = %s").format(audit.table("builds")), (build.key,)
    ).fetchone()
    if not row or row[0] is None:
        return None
    if changed := fingerprint.changed_tables(row[0], fingerprint.fingerprint(conn)):
        raw = config.get().raw_schema
        return f"raw changed since this run prepared its build ({', '.join(f'{raw}.{t}' for t in changed)})"
    return None


def unvalidated(conn, build: Any, names: list[str]) -> list[str]:
    """The models of ``names`` whose current build no passing validation checked."""
    query = sql.SQL("select model from {} where key = %s and validated_built_at is distinct from built_at")
    unchecked = {r[0] for r in conn.execute(query.format(audit.table("build_models")), (build.key,))}
    return [name for name in names if name in unchecked]


def published_before(conn, build: Any, states: tuple[str, ...] = ("published", "rebuilding")) -> bool:
    """Whether this build was published already (then a cleared task's rebuild is published alone)."""
    row = conn.execute(sql.SQL("select state from {} where key = %s").format(audit.table("builds")), (build.key,))
    return (row.fetchone() or [None])[0] in states


def earlier_publish(conn, build: Any) -> tuple[list[str], dt.datetime] | None:
    """The tables and time of this build's last publish, if every model it built went out then."""
    if not published_before(conn, build, states=("published",)):
        return None  # 'rebuilding': a task cleared after the publish built again (and lost its table, or failed)
    row = conn.execute(
        sql.SQL(
            "select tables, published_at from {} where run_id = %s and logical_date = %s"
            " order by published_at desc limit 1"
        ).format(audit.table("publish_log")),
        (build.run_id, build.day),
    ).fetchone()
    return None if row is None else (list(row[0]), row[1])
