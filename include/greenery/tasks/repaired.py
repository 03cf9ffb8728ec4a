"""alert_slack tells on-call when the run it runs in is repaired: an earlier attempt failed, its marts are out now.

Sent by alert_slack, or by publish when alert_slack will not run (*Clear only failed tasks*). Only when every task
that failed since the last notice has succeeded (or was skipped) since: a task still red is no repair (second
review: a digest still failed was listed as repaired). The digest's failures are not its business: a digest is
repaired by clearing it alone, which runs neither alert_slack nor publish, and its own page says what went out.
Once per repair: the notice is recorded (greenery_audit.alerts_sent, signature ``repaired``); the attempts since the
last one's are read (a run repaired, failed again, repaired again). Nothing goes without a usable Slack connection.
"""

from __future__ import annotations

import logging
from typing import Any

from greenery import alerts_sent, audit, config, links, runtime, warehouse
from greenery.alerts import delivery
from greenery.alerts.repaired import build_repaired_notice
from greenery.tasks.failures import NOT_PAGED

log = logging.getLogger(__name__)

SIGNATURE = alerts_sent.REPAIRED
DIGEST = "state_of_the_data"
DONE = ("success", "skipped")
READ_WITHIN_S = 15  # the reads and the record: milliseconds when the warehouse is well
CONNECT_TIMEOUT_S = 5


def announce(context: Any, published: bool) -> str:
    """Send the notice when this run's marts are out (``published``) and an attempt since the last notice's failed;
    return what alert_slack's own message adds ("" when nothing was due). Best effort: it must not hold back the
    alert, nor fail alert_slack into a retry that pages the alert twice; what went wrong is said and logged."""
    try:
        return _announce(context, published)
    except Exception as exc:
        log.error("could not tell on-call that this run is repaired: %s", exc)
        return f"; the notice that the run is repaired was NOT sent ({type(exc).__name__}: see the log)"


def _announce(context: Any, published: bool) -> str:
    run_id, attempt = context["run_id"], runtime.clear_number(context)
    settings = config.get()
    if not published or not attempt or delivery.route_problem(settings.alert_conn_id):
        return ""  # the first run has no earlier attempt; attempt None: the run's details are not known
    with _warehouse("the run's earlier failures") as conn:
        published_at = audit.run_published_at(conn, run_id)
        # The attempts since the last notice's: its own failures came after it (a digest failing after the notice),
        # and the notice listed those of the attempts before it.
        last = alerts_sent.last_with(conn, run_id, [SIGNATURE])
        since = (last[1] or 0) if last else 0
        failures = [
            {**f, "paged": not f["error"].endswith(NOT_PAGED)}
            for f in audit.task_failures(conn, run_id)
            if since <= (f["clear_number"] or 0) < attempt and f["task_id"] != DIGEST
        ]
    if published_at is None or not failures or _still_red(context, {f["task_id"] for f in failures}):
        return ""
    notice = build_repaired_notice(
        dag_id=runtime.dag_id(context),
        logical_date=runtime.interval(context).day.isoformat(),
        run_id=run_id,
        published_at=published_at,
        failures=failures,
        links=links.for_run(run_id),
    )
    try:
        delivery.send(notice, settings.alert_conn_id, channel=settings.alert_channel)
    except delivery.SlackDeliveryError as exc:
        if not exc.maybe_delivered:
            raise
        log.error("the notice that this run is repaired may have been posted; not sent again: %s", exc)
    try:
        with _warehouse("the record of the repaired notice") as conn:
            alerts_sent.record(conn, run_id, [SIGNATURE], attempt, runtime.run_type(context))
    except Exception as exc:  # it went: not failed for this, whose retry would send it again (it may, unrecorded)
        log.error("the notice that this run is repaired went out but is not on record: %s", exc)
    log.info("told on-call that run %s is repaired (%d earlier failures)", run_id, len(failures))
    return f"; on-call was told the run is repaired ({len(failures)} earlier failure{'s' if len(failures) > 1 else ''})"


def _still_red(context: Any, task_ids: set[str]) -> list[str]:
    """Which of ``task_ids`` have not succeeded (or been skipped) since they failed; this task is running: done."""
    own = runtime.task_id(context)
    states = runtime.task_states(context, tuple(sorted(task_ids)))
    red = sorted(t for t in task_ids if t != own and states.get(t) not in DONE)
    if red:
        log.info("not repaired yet: %s have not succeeded since they failed", ", ".join(red))
    return red


def _warehouse(what: str):
    return warehouse.connect_answering_within(READ_WITHIN_S, what, connect_timeout=CONNECT_TIMEOUT_S)
