"""Concurrent runs on one warehouse, as the README promises them, on the real Greenery data.

Two runs at once (two days; or a scheduled and a manual run of the same day) must both publish their
work, never drop the other's build schemas, never deadlock, and end with the tables that running them
one after the other gives. GREENERY_STRESS_LOOPS (default 2) repeats the races; the closing note of
issue 11 quotes a run with 20.
"""

from __future__ import annotations

import datetime as dt
import os
import threading

import psycopg
import pytest
from helpers import hashes, publish_checked
from psycopg import sql

from greenery import wap, warehouse
from greenery.materialize import relations
from greenery.project import models

pytestmark = pytest.mark.db

MODELS = models.discover()
LOOPS = int(os.environ.get("GREENERY_STRESS_LOOPS", "2"))
DAY1, DAY2 = dt.date(2021, 2, 11), dt.date(2021, 2, 12)


def one_run(url: str, run_id: str, day: dt.date, barrier: threading.Barrier, errors: list) -> None:
    """What the DAG does for a run, minus Airflow: prepare, build, read every built table (validate), publish."""
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            run = wap.Build(run_id, day)
            barrier.wait(30)
            wap.prepare(conn, run)
            wap.build_models(conn, MODELS, run)
            for name in wap.built_models(conn, MODELS, run):  # what validate reads: fails if the schema went
                built = wap.built_delta(conn, MODELS[name], run) or f"{run.schema(MODELS[name].layer)}.{name}"
                conn.execute(sql.SQL("select count(*) from {}").format(sql.Identifier(*built.split("."))))
            published = publish_checked(conn, MODELS, run)
            assert len(published) == len(MODELS), published
    except Exception as exc:
        errors.append(exc)


def race(url: str, runs: list[tuple[str, dt.date]]) -> list[Exception]:
    errors: list[Exception] = []
    barrier = threading.Barrier(len(runs))
    threads = [threading.Thread(target=one_run, args=(url, rid, day, barrier, errors)) for rid, day in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not any(t.is_alive() for t in threads), "a run hung (deadlock between runs?)"
    return errors


@pytest.fixture(scope="module")
def sequential(pg_admin_url, published_template):
    """The tables after the runs of 2021-02-11 and 2021-02-12 one after the other (plus the template's run); the
    reference of every attempt below, computed once."""
    url = warehouse.create_database(pg_admin_url, f"greenery_sequential_{os.getpid()}", template=published_template)
    with psycopg.connect(url, autocommit=True) as conn:
        for day in (DAY1, DAY2):
            run = wap.Build(f"sequential-{day}", day)
            wap.prepare(conn, run)
            wap.build_models(conn, MODELS, run)
            publish_checked(conn, MODELS, run)
        return hashes(conn)


@pytest.mark.parametrize("attempt", range(LOOPS))
def test_two_days_at_once_both_publish_their_day(attempt, pg_admin_url, published_template, sequential):
    """Finding 1: one run's cleanup dropped the other's live schemas; it then 'published 0 tables'."""
    url = warehouse.create_database(pg_admin_url, f"greenery_race_{os.getpid()}_{attempt}", template=published_template)
    errors = race(url, [(f"race-{attempt}-a", DAY1), (f"race-{attempt}-b", DAY2)])
    assert errors == []
    with psycopg.connect(url, autocommit=True) as conn:
        days = [r[0] for r in conn.execute("select as_of_date from marts.metrics_daily order by 1")]
        assert days == [DAY1, DAY2]
        logged = conn.execute(
            "select run_id, cardinality(tables) from greenery_audit.publish_log where run_id like 'race-%'"
        ).fetchall()
        assert sorted(logged) == [(f"race-{attempt}-a", len(MODELS)), (f"race-{attempt}-b", len(MODELS))]
        assert hashes(conn) == sequential


@pytest.mark.parametrize("attempt", range(LOOPS))
def test_a_scheduled_and_a_manual_run_of_the_same_day_at_once(attempt, pg_admin_url, published_template):
    url = warehouse.create_database(pg_admin_url, f"greenery_same_{os.getpid()}_{attempt}", template=published_template)
    with psycopg.connect(url, autocommit=True) as conn:
        before = hashes(conn)  # the template's published run of the same day, same raw data
    errors = race(url, [(f"scheduled__{attempt}", DAY2), (f"manual__{attempt}", DAY2)])
    assert errors == []
    with psycopg.connect(url, autocommit=True) as conn:
        assert hashes(conn) == before
        n = conn.execute("select count(*) from greenery_audit.publish_log where cardinality(tables) > 0").fetchone()[0]
        assert n == 3  # the template's run and both of these


def test_a_publish_never_drops_another_runs_live_build(published_url):
    with psycopg.connect(published_url, autocommit=True) as conn:
        live, other = wap.Build("live", DAY1), wap.Build("other", DAY2)
        wap.prepare(conn, live)
        wap.build_models(conn, MODELS, live, only=["stg_postgres__users", "stg_postgres__addresses"])
        wap.prepare(conn, other)
        wap.build_models(conn, MODELS, other)
        publish_checked(conn, MODELS, other)  # drops finished builds: not the live one
        assert set(wap.built_models(conn, MODELS, live)) == {"stg_postgres__users", "stg_postgres__addresses"}
        wap.build_models(conn, MODELS, live)
        assert len(publish_checked(conn, MODELS, live)) == len(MODELS)


def test_a_full_refresh_published_under_a_run_building_on_its_merged_view_refuses_that_run_not_mixes_it(
    published_url,
):
    """Review (README: "no run drops or reads another's build"): a full_refresh publishing stg_postgres__events whole
    dropped the merged view of a run building beside it (its recomputed events over the published table), and that
    run's later models read the other run's table for their own, green. They refuse, naming the view and the step; the
    run cleared builds again on what is published, and publishes."""
    events = "stg_postgres__events"
    with psycopg.connect(published_url, autocommit=True) as conn:
        live, whole = wap.Build("live", DAY2), wap.Build("whole", DAY2)
        wap.prepare(conn, live)
        wap.build_models(conn, MODELS, live, only=[events])
        assert wap.built_delta(conn, MODELS[events], live)  # incremental: its delta, and the view over it
        wap.prepare(conn, whole)
        wap.build_models(conn, MODELS, whole, full_refresh=True)
        publish_checked(conn, MODELS, whole)  # events published whole: the live run's view on it dropped
        before = hashes(conn)
        rest = [name for name in MODELS if name != events]
        with pytest.raises(relations.MergedViewDropped, match=r"dropped by another run publishing .* Clear the whole"):
            wap.build_models(conn, MODELS, live, only=rest)
        assert hashes(conn) == before
        again = wap.Build("live-cleared", DAY2)  # the run cleared: prepared and built again
        wap.prepare(conn, again)
        wap.build_models(conn, MODELS, again)
        assert len(publish_checked(conn, MODELS, again)) == len(MODELS)


def test_publishing_nothing_or_a_lost_build_is_an_error_that_changes_nothing(published_url):
    with psycopg.connect(published_url, autocommit=True) as conn:
        before = hashes(conn)
        run = wap.Build("empty", DAY2)
        wap.prepare(conn, run)
        with pytest.raises(wap.PublishError, match="nothing to publish"):
            publish_checked(conn, MODELS, run)
        wap.build_models(conn, MODELS, run)
        conn.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(run.schema("marts"))))
        with pytest.raises(wap.PublishError, match="no longer holds them"):
            publish_checked(conn, MODELS, run)
        assert hashes(conn) == before
        logged = conn.execute("select count(*) from greenery_audit.publish_log where run_id = 'empty'").fetchone()
        assert logged[0] == 0


def test_two_new_days_at_once_the_second_to_publish_is_refused_changes_nothing_and_publishes_once_cleared(
    published_url,
):
    """Review: the README's failure catalog said two runs of two days at once both publish their day. Two runs of
    days after the published one each take a new step of the order snapshot; the second to publish built its step on
    a history the first has replaced: refused, naming the snapshot, leaving every table as the first run left it;
    its run cleared (built again), it publishes."""
    first, second = wap.Build("run-13", dt.date(2021, 2, 13)), wap.Build("run-14", dt.date(2021, 2, 14))
    with psycopg.connect(published_url, autocommit=True) as conn:
        for run in (first, second):
            wap.prepare(conn, run)
        for run in (first, second):
            wap.build_models(conn, MODELS, run)
        publish_checked(conn, MODELS, first)
        after_first = hashes(conn)
        with pytest.raises(wap.PublishError, match=r"snapshots\.snap_orders moved on .* Clear the whole run"):
            publish_checked(conn, MODELS, second)
        assert hashes(conn) == after_first
        again = wap.Build("run-14-cleared", second.day)
        wap.prepare(conn, again)
        wap.build_models(conn, MODELS, again)
        assert publish_checked(conn, MODELS, again)
