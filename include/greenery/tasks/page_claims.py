"""One page per error among a run's failed tasks: each failure callback claims the page, the first claim pages.

Review: the warehouse gone mid-run failed four model tasks side by side, and each paged. A failed task's callback
pushes a claim (an XCom: what callbacks of one run can share through the Execution API) with its error, the run's
attempt (``clear_number``) and the time it failed, then reads the claims of the run's other failed tasks: the earliest
claim of the same error pages, and a later one, made after it, sees it and only records its failure. Each claim then
says how its page went: one that was not sent (Slack refusing, no connection), or whose callback was killed before it
said (still "paging" long after), or from long ago (another outage of the same run) covers nothing, and the next pages.
Anything amiss (the Execution API failing) pages: a page more rather than none.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import psycopg

from greenery import runtime, warehouse

log = logging.getLogger(__name__)

KEY = "failure_page"
# How long a claim takes to be seen by the others (one request on the same API), waited only when another task of
# the run has failed or is running; how long a later task waits for the first claim's page to go (Slack answers in
# well under a second; the rest of the callback's budget is its own page's).
SEEN_WITHIN_S, FIRST_PAGE_WITHIN_S, POLL_S = 1.0, 5.0, 0.5
# A claim "paging" for longer than a failure callback may live was killed before its page (Airflow: 20 s).
KILLED_AFTER_S = 30.0
# A claim covers the failures of one outage, not one of the same error hours later (review: a second task killed in
# the same attempt, "killed" again, went unpaged).
COVERS_S = 15 * 60.0
PAGING, SENT, NOT_SENT, COVERED = "paging", "sent", "not sent", "covered"


WAREHOUSE_UNREACHABLE = "the warehouse unreachable"


def cause_of(exc: BaseException | None, error: str) -> str:
    """What claims compare: the failure's ``error``, but one for every task an outage of the warehouse fails,
    whatever each met (review: mid-statement, each text named its own model; at connect, "refused", "timeout expired"
    or "starting up": one page each). An outage: the warehouse not reached (WarehouseUnavailableError but a
    connection written wrong), or psycopg's connection errors (no SQLSTATE, or classes 08 and 57P: the server shut
    down, or not yet up); a statement timeout (57014) is the model's own."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        state = getattr(exc, "sqlstate", None) or ""
        if isinstance(exc, warehouse.WarehouseUnavailableError):
            return error if isinstance(exc, warehouse.ConnectionSettingError) else WAREHOUSE_UNREACHABLE
        if isinstance(exc, psycopg.OperationalError) and (not state or state.startswith(("08", "57P"))):
            return WAREHOUSE_UNREACHABLE
        exc = exc.__cause__ or exc.__context__
    return error


def covered_by(context: Any, error: str) -> str | None:
    """The task whose page covers this failure (this task then does not page), or None: this task pages, and says how
    that went with :func:`settle`."""
    ti = context.get("ti")
    mine = {
        "error": error,
        "attempt": runtime.clear_number(context),
        "at": time.time(),
        "task": getattr(ti, "task_id", ""),
        "page": PAGING,
    }
    try:
        ti.xcom_push(key=KEY, value=mine)
        others = [t for t in context["dag"].task_ids if t != mine["task"]]
        if not _failing(context, others):  # no other claim can exist yet: a later one will see this one
            return None
        time.sleep(SEEN_WITHIN_S)
        deadline = time.monotonic() + FIRST_PAGE_WITHIN_S
        while True:
            claims = [c for c in ti.xcom_pull(task_ids=_failing(context, others), key=KEY) or [] if isinstance(c, dict)]
            first = _first(claims, mine)
            if first is mine:
                return None
            if first.get("page") == SENT:
                ti.xcom_push(key=KEY, value={**mine, "page": COVERED})  # not a claim that may page any more
                return str(first.get("task"))
            if time.monotonic() >= deadline:  # its page has not gone yet: this one goes, rather than none
                log.warning(
                    "paging: %s's page for the same error did not go within %.0f s",
                    first.get("task"),
                    FIRST_PAGE_WITHIN_S,
                )
                return None
            time.sleep(POLL_S)
    except Exception as exc:  # fail toward paging
        log.warning("paging: the other failed tasks' pages could not be read (%s)", exc)
        return None


def claim_of(context: Any, task_id: str, attempt: int | None) -> str | None:
    """How ``task_id``'s page for this ``attempt`` of the run went, as its claim says (PAGING, SENT, NOT_SENT,
    COVERED; PAGING long after: its callback was killed, NOT_SENT), or None: no claim, or it cannot be read."""
    try:
        claim = context["ti"].xcom_pull(task_ids=task_id, key=KEY)
    except Exception as exc:  # toward paging
        log.warning("paging: %s's claim could not be read (%s)", task_id, exc)
        return None
    if not isinstance(claim, dict) or claim.get("attempt") != attempt:
        return None
    if claim.get("page") == PAGING and time.time() - float(claim.get("at") or 0) > KILLED_AFTER_S:
        return NOT_SENT
    return claim.get("page")


def settle(context: Any, went: bool) -> None:
    """Say whether this task's page went (or may have): a claim whose page did not go covers nothing."""
    ti = context.get("ti")
    try:
        claim = ti.xcom_pull(task_ids=ti.task_id, key=KEY)
        if isinstance(claim, dict):
            ti.xcom_push(key=KEY, value={**claim, "page": SENT if went else NOT_SENT})
    except Exception as exc:  # the others then wait for it, and page
        log.warning("paging: could not say how this page went (%s)", exc)


def _failing(context: Any, task_ids: list[str]) -> list[str]:
    """The tasks that may hold a claim: failed, or still "running" (a real scheduler's task is, to the API, until its
    process ends: its failure callback included)."""
    states = runtime.task_states(context, tuple(task_ids))
    return [t for t, state in states.items() if state in ("failed", "running")]


def _first(claims: list[dict], mine: dict) -> dict:
    """The earliest claim that may cover ``mine``: the same error in the same attempt, not long before it, paging or
    sent (not one whose page did not go, nor one covered by another), and not one whose callback died before it said."""

    def covers(claim: dict) -> bool:
        age = mine["at"] - float(claim.get("at") or 0)
        return (
            (claim.get("error"), claim.get("attempt")) == (mine["error"], mine["attempt"])
            and age <= COVERS_S
            and claim.get("page") in (PAGING, SENT)
            and not (claim.get("page") == PAGING and age > KILLED_AFTER_S)
        )

    return min([c for c in claims if covers(c)] + [mine], key=lambda c: (float(c.get("at") or 0), str(c.get("task"))))
