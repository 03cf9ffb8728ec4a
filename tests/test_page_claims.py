"""One page per error among a run's failed tasks (greenery/tasks/page_claims.py), its protocol in threads over a fake
Execution API: task states and XComs shared as the api-server keeps them, each request taking its own time.

Review: the warehouse gone mid-run paged once per task it failed, four pages. The diff's review: a claim whose page
did not go (Slack refusing) or whose callback was killed before it paged silenced the others; and one of the same
error hours later in the same attempt (another kill) was held back.
"""

from __future__ import annotations

import random
import threading
import time
import types

import pytest

from greenery.tasks import page_claims

WAREHOUSE_GONE = "cannot connect to the warehouse"


class _Run:
    """One DAG run's task states and XComs as the Execution API keeps them, shared by the tasks' threads."""

    def __init__(self, tasks: list[str]) -> None:
        self.tasks, self.states, self.xcom, self.lock = tasks, {}, {}, threading.Lock()
        self.latency: dict[str, float] = {}  # each task's request time, under the claim's time to be seen
        self.pages: list[str] = []

    def context(self, task: str, attempt: int = 0) -> dict:
        run = self

        class TaskInstance:
            task_id, dag_id, run_id = task, "greenery_daily", "r"

            def xcom_push(self, key, value):
                time.sleep(run.latency.get(task, 0.002))  # a request
                with run.lock:
                    run.xcom[(task, key)] = value

            def xcom_pull(self, task_ids, key):
                with run.lock:
                    if isinstance(task_ids, str):
                        return run.xcom.get((task_ids, key))
                    return [run.xcom.get((t, key)) for t in task_ids]

            def get_task_states(self, dag_id, run_ids, task_ids):
                with run.lock:
                    return {"r": {t: run.states.get(t) for t in task_ids}}

        return {
            "ti": TaskInstance(),
            "dag": types.SimpleNamespace(task_ids=self.tasks),
            "dag_run": types.SimpleNamespace(clear_number=attempt),
        }

    def fail(self, task: str, error: str, attempt: int = 0, page_goes: bool = True) -> str | None:
        """What the failure callback does: claim, then page (and say how it went) unless covered."""
        with self.lock:  # to the API, a real scheduler's task runs until its process ends, its callback included
            self.states[task] = "running"
        context = self.context(task, attempt)
        covered = page_claims.covered_by(context, error)
        if covered is None:
            if page_goes:
                with self.lock:
                    self.pages.append(task)
            page_claims.settle(context, page_goes)
        with self.lock:
            self.states[task] = "failed"
        return covered


@pytest.fixture
def quick(monkeypatch):
    monkeypatch.setattr(page_claims, "SEEN_WITHIN_S", 0.15)  # far above a request: no flake on a busy machine
    monkeypatch.setattr(page_claims, "FIRST_PAGE_WITHIN_S", 0.6)
    monkeypatch.setattr(page_claims, "POLL_S", 0.05)


def test_tasks_failing_at_once_with_one_error_page_once_and_another_error_pages_too(quick):
    """Whatever the order and overlap of the failures, the tasks with one error page once, a task with another error
    pages too, and a claim left by an earlier attempt of the run holds nothing back."""
    rng = random.Random(7)  # noqa: S311 (the failures' order and overlap, not a secret)
    for _ in range(4):
        run = _Run([f"t{i}" for i in range(6)])
        errors = {f"t{i}": WAREHOUSE_GONE for i in range(4)} | {"t4": "integer out of range"}
        run.latency = {t: rng.uniform(0, 0.02) for t in errors}
        covered = _fail_at_once(run, errors, {t: rng.uniform(0, 0.03) for t in errors})
        pagers = sorted(t for t, by in covered.items() if by is None)
        assert len(pagers) == 2 and "t4" in pagers and sorted(run.pages) == pagers, covered
        assert {by for by in covered.values() if by} <= set(pagers)
    assert run.fail("t5", WAREHOUSE_GONE, attempt=1) is None  # the run cleared: news again


def test_one_warehouse_outage_is_one_cause_whatever_each_task_met_and_a_models_own_error_is_its_own(quick):
    """Review: the warehouse restarting under four model tasks: caught mid-statement, each error named its model; at
    connect, "refused", "timeout expired" or "starting up": a page each. The outage is one cause; a statement
    timeout, a SQL error or a connection written wrong are each their own."""
    import psycopg

    from greenery import warehouse
    from greenery.materialize.model_sql import ModelBuildError

    def built(model: str, error: BaseException) -> BaseException:
        try:
            raise ModelBuildError(
                f"model {model} failed building x: [{getattr(error, 'sqlstate', '')}] {error}"
            ) from error
        except ModelBuildError as exc:
            return exc

    outage = [
        built("fact_orders", psycopg.errors.AdminShutdown("terminating connection due to administrator command")),
        built("dim_users", psycopg.OperationalError("consuming input failed: server closed the connection")),
        psycopg.errors.CannotConnectNow("the database system is starting up"),
        warehouse.WarehouseUnavailableError("cannot connect to the warehouse: Connection refused"),
    ]
    assert {page_claims.cause_of(exc, str(exc)) for exc in outage} == {page_claims.WAREHOUSE_UNREACHABLE}
    own = [
        built("fact_orders", psycopg.errors.QueryCanceled("canceling statement due to statement timeout")),
        built("fact_orders", psycopg.errors.UndefinedColumn('column "x" does not exist')),
        warehouse.ConnectionSettingError("the extra of Airflow connection 'w' is not a JSON object"),
        ValueError("disk full"),
    ]
    assert [page_claims.cause_of(exc, str(exc)) for exc in own] == [str(exc) for exc in own]
    run = _Run(["fact_orders", "dim_users", "int_orders"])
    causes = {task: page_claims.cause_of(exc, str(exc)) for task, exc in zip(run.tasks, outage, strict=False)}
    covered = _fail_at_once(run, causes, dict.fromkeys(causes, 0.0))
    assert len(run.pages) == 1 and sorted(t for t, by in covered.items() if by) == sorted(
        set(run.tasks) - set(run.pages)
    )


def test_a_claim_whose_page_did_not_go_or_was_killed_or_is_old_covers_nothing(quick, monkeypatch):
    """The first claim's page refused by Slack: the next task of the same error pages. A claim still "paging" long
    after (its callback killed before it said), or from long ago (another outage), covers nothing either; one that
    went covers the next."""
    run = _Run(["a", "b", "c", "d", "e"])
    assert run.fail("a", WAREHOUSE_GONE, page_goes=False) is None and run.pages == []
    started = time.monotonic()
    assert run.fail("b", WAREHOUSE_GONE) is None and run.pages == ["b"]  # a's page did not go: b's does
    assert time.monotonic() - started < page_claims.FIRST_PAGE_WITHIN_S  # at once: a said so
    assert run.fail("c", WAREHOUSE_GONE) == "b" and run.pages == ["b"]
    assert run.xcom[("c", page_claims.KEY)]["page"] == page_claims.COVERED
    with run.lock:  # c's claim, made now, then killed before its page: still "paging"
        run.xcom[("c", page_claims.KEY)] = {**run.xcom[("c", page_claims.KEY)], "page": page_claims.PAGING}
        run.xcom[("b", page_claims.KEY)] = {**run.xcom[("b", page_claims.KEY)], "at": time.time() - 3600}
        run.xcom[("a", page_claims.KEY)] = {**run.xcom[("a", page_claims.KEY)], "at": time.time() - 3600}
    started = time.monotonic()
    assert run.fail("d", WAREHOUSE_GONE) is None and run.pages == ["b", "d"]  # b's page was an hour ago
    assert time.monotonic() - started >= page_claims.FIRST_PAGE_WITHIN_S  # it waited for c's page first
    monkeypatch.setattr(page_claims, "KILLED_AFTER_S", 0.0)  # c's callback long dead
    with run.lock:
        run.xcom[("d", page_claims.KEY)] = {**run.xcom[("d", page_claims.KEY)], "page": page_claims.NOT_SENT}
    started = time.monotonic()
    assert run.fail("e", WAREHOUSE_GONE) is None and run.pages == ["b", "d", "e"]
    assert time.monotonic() - started < page_claims.FIRST_PAGE_WITHIN_S  # c's is dead: no wait for it


def _fail_at_once(run: _Run, errors: dict[str, str], delays: dict[str, float]) -> dict[str, str | None]:
    """Each task of ``errors`` fails with its error after its delay, all in threads; which task's page covers each."""
    covered: dict[str, str | None] = {}

    def failing(task: str) -> None:
        time.sleep(delays[task])
        covered[task] = run.fail(task, errors[task])

    threads = [threading.Thread(target=failing, args=(t,)) for t in errors]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return covered
