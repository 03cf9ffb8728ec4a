"""Write-audit-publish: build in run-private schemas, validate there, publish atomically.

A run writes every model into its own schemas (``_build_<day>_<hash>__<layer>``, and ``...__quarantine``
for the rows it holds back). Readers only use ``staging``, ``intermediate``, ``marts`` and
``quarantine``. Publishing moves the run's tables there in one transaction under the exclusive
advisory lock (:mod:`greenery.locks`): a reader sees all of the previous publish or all of this one.

Each build is registered in ``greenery_audit.builds`` with the run's clock (recorded once, so a rerun
next year renders the same rules) and every model it built is listed in ``build_models``. Publish
refuses to publish nothing, a build that lost a listed model, or one built again after the validation that
passed (``record_validated``). A build's schemas are dropped by a later publish once the build is published,
or once it has been idle longer than ``build_ttl``; a live run's schemas are never touched.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from psycopg import sql
from psycopg.types.json import Jsonb

from greenery import audit, build_schemas, config, docs, links, lock_waits, locks, privileges, publish_checks, warehouse
from greenery.build_schemas import BUILD_PREFIX
from greenery.materialize import incremental, quarantine, relations
from greenery.materialize.build import BuildResult, build_model
from greenery.materialize.relations import ident
from greenery.project.models import Model
from greenery.project.render import Interval, incremental_since
from greenery.publish_checks import PublishError

log = logging.getLogger(__name__)

QUARANTINE = config.QUARANTINE_SCHEMA


class AlreadyPublished(PublishError):
    """Everything this build holds went out in an earlier publish and nothing was built since: a try of the
    publish task that committed and then failed before it could report (killed, timed out), retried."""

    def __init__(self, build: Build, tables: list[str], published_at: dt.datetime) -> None:
        super().__init__(
            f"run {build.run_id!r} published its build at {published_at:%Y-%m-%d %H:%M:%S %Z} already and nothing"
            " was built since; nothing more to publish"
        )
        self.tables, self.published_at = tables, published_at


@dataclass(frozen=True)
class Build:
    """Where one run writes: a schema per layer (and one for quarantine), named after its day and run id."""

    run_id: str
    day: dt.date

    @property
    def key(self) -> str:
        digest = hashlib.sha1(self.run_id.encode(), usedforsecurity=False).hexdigest()[:8]
        return f"{BUILD_PREFIX}{self.day:%Y%m%d}_{digest}"

    def schema(self, layer: str) -> str:
        return f"{self.key}__{layer}"

    @property
    def schema_of(self) -> dict[str, str]:
        return {layer: self.schema(layer) for layer in (*config.LAYERS, QUARANTINE)}


def prepare(
    conn, build: Build, run_time: dt.datetime | None = None, raw_fingerprint: dict | None = None
) -> dt.datetime:
    """Start a run's build from empty schemas and register it; return the run's clock.

    The clock is the one recorded when the run was first prepared: clearing the whole run with raw as it was
    keeps it, so its rules decide as they did. It moves forward in two cases. Raw changed since the run was last
    prepared (``raw_fingerprint``, see sources.fingerprint, differs): the run reads raw as it is now, so it takes
    ``run_time`` (now); with its old clock, rows updated since (a delivery, a profile edit) were "in its future",
    quarantined with everything that hangs on them (the user's orders and events). And another run with a later
    clock published since: the old clock would take back what that run published (rows after it are in its
    future: quarantined, and deleted from the incremental tables), so it takes that run's.
    """
    warehouse.require_supported_server(conn)
    audit.ensure(conn)
    previous = recorded_clock(conn, build)
    with conn.transaction():
        locks.share(conn)
        for schema in build.schema_of.values():
            conn.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(schema)))
            conn.execute(sql.SQL("create schema {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("delete from {} where key = %s").format(audit.table("build_models")), (build.key,))
        # Read under the shared lock: no publish can come between it and the upsert.
        later = audit.later_publish(conn, build.key)
        recorded = conn.execute(
            sql.SQL(
                "insert into {builds} as b"
                " (key, run_id, logical_date, run_time, created_at, touched_at, state, raw_fingerprint)"
                " values (%s, %s, %s, %s, now(), now(), 'building', %s)"
                " on conflict (key) do update set touched_at = now(), state = 'building',"
                " raw_fingerprint = excluded.raw_fingerprint, run_time = greatest(b.run_time, %s::timestamptz,"
                "  case when b.raw_fingerprint is distinct from excluded.raw_fingerprint then excluded.run_time end)"
                " returning b.run_time"
            ).format(builds=audit.table("builds")),
            (
                build.key,
                build.run_id,
                build.day,
                run_time or dt.datetime.now(dt.UTC),
                Jsonb(raw_fingerprint),
                later["run_time"] if later else None,
            ),
        ).fetchone()[0]
    if previous is not None and recorded != previous:
        log.warning(
            "run %s: its clock moves from %s to %s (raw changed since it was prepared, or a run with that clock"
            " published since it started)",
            build.run_id,
            previous.isoformat(),
            recorded.isoformat(),
        )
    return recorded


def recorded_clock(conn, build: Build) -> dt.datetime | None:
    """The run's clock as :func:`prepare` recorded it, or None when the run was never prepared."""
    if not audit.exists(conn, "builds"):
        return None
    row = conn.execute(
        sql.SQL("select run_time from {} where key = %s").format(audit.table("builds")), (build.key,)
    ).fetchone()
    return row[0] if row else None


def record_built(conn, build: Build, model: str, info: dict | None = None) -> None:
    """List ``model`` as built by this run and not yet published (in the build's own transaction).

    ``info`` is what publish must check first (a snapshot: the published step it was built on).
    """
    conn.execute(
        sql.SQL(
            "insert into {} (key, model, built_at, info) values (%s, %s, now(), %s)"
            " on conflict (key, model) do update set built_at = now(), info = excluded.info"
        ).format(audit.table("build_models")),
        (build.key, model, Jsonb(info)),
    )
    conn.execute(
        # 'rebuilding': a task cleared after the build was published (then its rebuild is published alone).
        sql.SQL(
            "update {} set touched_at = clock_timestamp(), state = case when state in ('published', 'rebuilding')"
            " then 'rebuilding' else 'building' end where key = %s"
        ).format(audit.table("builds")),
        (build.key,),
    )


def build_models(
    conn, models: Mapping[str, Model], build: Build, *, full_refresh: bool = False, only: list[str] | None = None
) -> list[BuildResult]:
    """Build ``models`` (or ``only`` those) into the prepared build, in order, each listed as it is built.

    What the DAG's model tasks do, one after the other and without Airflow (tests, benchmarks).
    """
    with conn.transaction():  # no transaction left open between the models, whatever the connection's mode
        clock = recorded_clock(conn, build)
    if clock is None:
        raise PublishError(f"run {build.run_id!r} was never prepared (wap.prepare)")
    results = []
    for name, model in models.items():
        if only is not None and name not in only:
            continue
        with conn.transaction():
            results.append(
                build_model(
                    conn,
                    model,
                    models,
                    Interval.for_day(build.day),
                    build.schema_of,
                    run_id=build.run_id,
                    full_refresh=full_refresh,
                    run_time=clock,
                )
            )
            record_built(conn, build, name, results[-1].info)
    return results


def built_times(conn, build: Build) -> dict[str, dt.datetime]:
    """When each model this run has not published yet was last built: what a validation starting now checks."""
    query = sql.SQL("select model, built_at from {} where key = %s").format(audit.table("build_models"))
    return dict(conn.execute(query, (build.key,)).fetchall())


def record_validated(conn, build: Build, built_at: Mapping[str, dt.datetime]) -> None:
    """A validation that passed checked these models as they were built at ``built_at`` (read when it started). A
    model built again since keeps its older mark, so publish refuses it until a validation checks the new build."""
    conn.execute(
        sql.SQL(
            "update {} as m set validated_built_at = v.built_at from unnest(%s::text[], %s::timestamptz[])"
            " as v(model, built_at) where m.key = %s and m.model = v.model and m.built_at = v.built_at"
        ).format(audit.table("build_models")),
        (list(built_at), list(built_at.values()), build.key),
    )


def built_models(conn, models: Mapping[str, Model], build: Build) -> list[str]:
    """The models this run built and has not published yet, in dependency order."""
    if not audit.exists(conn, "build_models"):
        return []
    rows = conn.execute(
        sql.SQL("select model from {} where key = %s").format(audit.table("build_models")), (build.key,)
    ).fetchall()
    listed = {r[0] for r in rows}
    return [name for name in models if name in listed]


def built_delta(conn, model: Model, build: Build) -> str | None:
    """The delta (recomputed rows) of an incremental build of ``model`` in this run, if there is one.

    Validation checks it instead of the merged view, so a daily run's validation follows the day's data
    (the merge keeps keys unique across the rest); publish merges it into the published table.
    """
    if model.materialized != "incremental":
        return None
    delta = relations.delta_relation(f"{build.schema(model.layer)}.{model.name}")
    return delta if relations.exists(conn, delta) else None


def built_quarantine(conn, model: Model, build: Build) -> str | None:
    if not model.config.get("quarantine"):
        return None
    table = f"{build.schema(QUARANTINE)}.{model.name}"
    return table if relations.exists(conn, table) else None


def _lost(conn, models: Mapping[str, Model], build: Build, names: list[str]) -> list[str]:
    return [
        name
        for name in names
        if not relations.exists(conn, f"{build.schema(models[name].layer)}.{name}")
        and built_delta(conn, models[name], build) is None
    ]


def publish(conn, models: Mapping[str, Model], build: Build, ttl: dt.timedelta | None = None) -> list[str]:
    """Move the run's tables into the reader schemas, atomically; return the published relations.

    Then, in the same transaction, drop the build schemas of published or long-idle builds. Other sessions' locks
    on the published tables are waited for a bounded time (lock_waits.py).
    """
    audit.ensure(conn)
    runs_until = lock_waits.runs_deadline()  # one budget for every try (review)
    attempt = functools.partial(_publish, conn, models, build, ttl, runs_until)
    return lock_waits.bounded(conn, attempt, config.get().publish_lock_wait.total_seconds())


def _publish(conn, models, build: Build, ttl, runs_until: float, try_: lock_waits.Try) -> list[str]:
    with conn.transaction():
        # As in the builds (materialize/build.py): an incremental merge compares a date column with the window's
        # start, which PostgreSQL converts in the session's zone; east of UTC the window's first day was kept.
        conn.execute("set local timezone = 'UTC'")
        lock_waits.take_publish_lock(conn, runs_until)  # the runs building and validating
        try_.arm()
        names = built_models(conn, models, build)
        if not names:
            if (earlier := publish_checks.earlier_publish(conn, build)) is not None:
                raise AlreadyPublished(build, *earlier)
            raise PublishError(
                f"run {build.run_id!r} has nothing to publish: no model was built into {build.key}__* since its"
                " last publish. Clear the model tasks (or the whole run) to rebuild."
            )
        missing = [name for name in models if name not in names]
        if missing and not publish_checks.published_before(conn, build):
            raise PublishError(
                f"run {build.run_id!r} did not build {', '.join(missing)} (a task marked success or skipped, or never"
                " run); nothing was published: its other tables would go out beside older ones. Clear the whole run."
            )
        lost = _lost(conn, models, build, names)
        if lost:
            raise PublishError(
                f"run {build.run_id!r} built {', '.join(lost)} but {build.key}__* no longer holds them; nothing was"
                f" published. To rebuild, {links.run_again('clear the whole run')}."
            )
        if unchecked := publish_checks.unvalidated(conn, build, names):
            more = f" (and {len(unchecked) - 5} more)" if len(unchecked) > 5 else ""
            # Review: publish trusted validate's result whatever attempt left it in XCom, so a model task cleared
            # alone and then publish (or validate marked success by hand) put an unchecked build out, green.
            check = links.run_again("clear validate with its downstream tasks, or the whole run")
            raise PublishError(
                f"run {build.run_id!r}: no validation that passed checked its build of {', '.join(unchecked[:5])}"
                f"{more} (a model task cleared without its downstream tasks, or validate marked success by hand);"
                f" nothing was published. To check it, {check}.",
                next_step=f"{check[:1].upper()}{check[1:]}.",
            )
        if changed := publish_checks.raw_changed(conn, build):  # since validate, or validate marked success
            again, step = links.run_again(links.CLEAR_THE_RUN), links.rebuild_from_raw()
            raise PublishError(f"{changed}; nothing was published. To rebuild from raw as it is, {again}.", step)
        clock = recorded_clock(conn, build)  # every incremental merge checks against it
        publish_checks.refuse_an_older_clock(conn, build, clock)
        kept = publish_checks.check_snapshots(conn, models, build, names)
        changing = [models[name] for name in names if name not in kept]  # a kept snapshot is left as it is now
        built = {m.name: (built_delta(conn, m, build), built_quarantine(conn, m, build)) for m in changing}
        modes = {}
        for model in changing:  # every lock first: a try that cannot have one has changed nothing
            delta, held_back = built[model.name]
            modes[model.name] = lock_waits.mode(conn, model, f"{build.schema(model.layer)}.{model.name}", delta)
            try_.take(model.relation, modes[model.name])
            if held_back is not None:
                try_.take(f"{QUARANTINE}.{model.name}", lock_waits.MERGE)
        for model in changing:
            try_.working_on(model.relation, modes[model.name])  # a lock wait running out later names it too
            _publish_model(conn, model, build, clock, *built[model.name])
        published = [models[name].relation for name in names]
        audit.record_publish(conn, build.run_id, build.day, published)
        conn.execute(sql.SQL("delete from {} where key = %s").format(audit.table("build_models")), (build.key,))
        conn.execute(
            sql.SQL("update {} set touched_at = now(), state = 'published' where key = %s").format(
                audit.table("builds")
            ),
            (build.key,),
        )
        dropped = build_schemas.drop_finished_unless_held(conn, build.key, ttl)
        try_.disarm()
    log.info(
        "published %d tables of run %s (%s); dropped %d finished build schemas",
        len(published),
        build.run_id,
        build.day,
        len(dropped),
    )
    return published


def _publish_model(conn, model: Model, build: Build, clock: dt.datetime | None, delta, held_back) -> None:
    """Publish ``model``'s build, merging ``delta`` if it has one (built_delta), and its quarantine ``held_back``."""
    source = f"{build.schema(model.layer)}.{model.name}"
    target = model.relation
    conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(model.layer)))
    since = incremental_since(model, Interval.for_day(build.day)) if delta is not None else None
    if delta is not None:
        # The build recomputed only recent rows: apply them to the published table.
        publish_checks.refuse_taking_back(conn, model, build, clock)
        incremental.merge(conn, model, target, delta, since)
        # Nothing may keep depending on the published table once this run is done.
        with conn.cursor() as cur:
            incremental.drop_build(cur, source)
    elif model.materialized == "daily_partition":
        # The build holds only the run's day: replace that day, keep the others.
        conn.execute(
            sql.SQL("create table if not exists {} (like {} including all)").format(ident(target), ident(source))
        )
        try:
            names = sql.SQL(", ").join(map(sql.Identifier, relations.append_new_columns(conn, target, source)))
        except relations.ColumnsChanged as exc:
            raise PublishError(f"{exc} Nothing was published.") from exc
        conn.execute(
            sql.SQL("delete from {} where {} = %s").format(ident(target), sql.Identifier(model.partition_by)),
            (build.day,),
        )
        conn.execute(
            sql.SQL("insert into {} ({}) select {} from {}").format(ident(target), names, names, ident(source))
        )
        conn.execute(sql.SQL("drop table {}").format(ident(source)))
    else:
        with privileges.kept_across_swap(conn, model.layer, model.name):  # review: readers lost theirs each publish
            build_schemas.drop_views_on(conn, target)
            conn.execute(sql.SQL("drop table if exists {}").format(ident(target)))
            conn.execute(sql.SQL("alter table {} set schema {}").format(ident(source), sql.Identifier(model.layer)))
        if not relations.replaced_whole(model):
            # Built whole (a first or full-refresh run), merged into from now on: vacuumed like any table.
            conn.execute(sql.SQL("alter table {} reset (autovacuum_enabled)").format(ident(target)))
    if held_back is not None:
        clock_or_end = clock or Interval.for_day(build.day).end  # the recorded clock its build rendered with
        quarantine.publish_day(conn, held_back, f"{QUARANTINE}.{model.name}", build.day, model, since, clock_or_end)
    # Where they differ only. A daily mart's LIKE copy had no table comment and kept old column text (review).
    docs.apply_comments(conn, model.name, model.layer, model.name)


def drop_finished_builds(conn, keep: Build | None = None, ttl: dt.timedelta | None = None) -> list[str]:
    """:func:`build_schemas.drop_all_finished` (``greenery`` maintenance and tests)."""
    return build_schemas.drop_all_finished(conn, keep.key if keep else None, ttl)
