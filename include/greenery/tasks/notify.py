"""The on-call alert after validation (whatever happened); the stakeholders' digest is in ``tasks.digest``.

``alert_slack`` runs once validate and publish are done, whether they passed or not: it reads the
validation summary from XCom and pages when a check failed or rows were quarantined, with the root
causes, their owners, how long they have been failing and links that open. It is *skipped*, with the
reason, when there is nothing to say, when an earlier task or publish failed (that task paged on its own),
or when the alert would only repeat unchanged warnings sent within the suppression window.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from airflow.sdk.exceptions import (
    AirflowFailException,
    AirflowSkipException,
    AirflowTaskTerminated,
    AirflowTaskTimeout,
)

from greenery import alerts_sent, audit, config, docs, links, runtime, warehouse
from greenery.alerts import delivery, messages, suppression, text
from greenery.checks import history
from greenery.tasks import alert_route, alert_turns, repaired
from greenery.tasks.failures import NOT_PAGED, MaybePosted
from greenery.tasks.validate import SUMMARY_KEY

log = logging.getLogger(__name__)


# What the alert's own warehouse reads and writes may take, in a failure callback (Airflow kills it 20 s after its
# task failed) and in alert_slack: they must not hold a page back, nor keep a task that paged running until its
# execution timeout, whose retry would page again (review: a warehouse that stopped answering did both).
CALLBACK_CONNECT_TIMEOUT_S = 5
STATEMENT_TIMEOUT_S = 15
# A bound on this side too, for a warehouse that stops answering once the connection is up (a proxy or a network path
# that stops forwarding: no statement reaches the server, whose timeout then never starts): on everything one
# `with _warehouse()` block sends, its settings included (about 4 to 25 short statements: the audit tables' checks).
# In alert_slack, twice the statement timeout; in a failure callback, which Airflow kills 20 s after its task failed,
# 2 s for the settings sent on connecting and 2 s for the read before the page (healthy, they take milliseconds), so
# that the connection (5 s at most) and they leave the page most of its 12 s (review: a 30 s bound there let the
# callback be killed before its page).
ANSWER_WITHIN_S = 2 * STATEMENT_TIMEOUT_S
CALLBACK_ANSWER_WITHIN_S = 2


@contextlib.contextmanager
def _warehouse(connect_timeout: int | None = None, answer_within_s: float | None = None) -> Iterator[Any]:
    answer_within_s = answer_within_s or ANSWER_WITHIN_S
    with warehouse.connect_answering_within(
        answer_within_s, "the alert's warehouse read", connect_timeout=connect_timeout or CALLBACK_CONNECT_TIMEOUT_S
    ) as conn:
        conn.execute(f"set statement_timeout = '{STATEMENT_TIMEOUT_S}s'")
        yield conn


def _not_published(answer_within_s: float | None = None) -> dict[str, Any]:
    """Which run readers still see; without it when the warehouse does not answer: it must not hold the page back
    (review: alert_slack's critical page never went, its task failed naming only the warehouse)."""
    try:
        with _warehouse(answer_within_s=answer_within_s) as conn:
            return audit.not_published_status(conn)
    except Exception as exc:
        log.warning("could not read which run readers still see: %s", exc)
        return {"published": False}


def states_now(context: Any) -> dict[str, str | None]:
    """validate's and publish's states now: a run that now fails before validate would read the earlier attempt's
    summary in XCom (runtime.task_states) and page its failures a second time."""
    return runtime.task_states(context, ("validate", "publish"))


def validation_summary(context: Any) -> dict[str, Any] | None:
    return context["ti"].xcom_pull(task_ids="validate", key=SUMMARY_KEY)


def for_on_call(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary with what on-call needs on top: owners' mentions and links into this deployment."""
    causes = []
    for cause in summary.get("root_causes") or []:
        owner = docs.owner_of(cause.get("model") or "") or {}
        causes.append({**cause, "owner": owner.get("name"), "mention": owner.get("slack")})  # Slack only
    found = links.for_run(summary["run_id"], "validate", text.as_int(summary.get("try_number")))
    return {**summary, "root_causes": causes, "links": found}


ALERT_TASK_ID = "alert_slack"  # the DAG's task that runs send_alert
FINISHED = ("success", "failed", "skipped", "upstream_failed", "removed")


def alert_will_run(context: Any) -> bool:
    """Whether alert_slack is still to run in this run (it is not when it ended and was not cleared)."""
    return runtime.task_states(context, (ALERT_TASK_ID,)).get(ALERT_TASK_ID) not in FINISHED


def published_in_this_run(context: Any, exc: BaseException | None = None) -> bool:
    """Whether the marts are this run's: publish succeeded (a task failing after it: the digest, the alert) and the
    run's publish is on record (a publish marked success by hand published nothing), or publish ended without a word
    (killed: no ``exc``; timed out or terminated) after committing the validation validate last gave it (review: the
    run's page said nothing was published). Any other failure of publish is before its commit, and published
    nothing: not read (a failure callback's page must not wait on a warehouse that may be what failed). False when
    this cannot be read (a failure callback must still page)."""
    try:
        states = states_now(context)
        succeeded = states.get("publish") == "success"
        if not succeeded:
            ended = exc is None or isinstance(exc, AirflowTaskTimeout | AirflowTaskTerminated)
            # validate's last summary: this attempt's, or, publish cleared alone, the one publish was given
            summary = validation_summary(context) if ended and states.get("validate") == "success" else None
            if not (summary or {}).get("validation_id"):
                return False
        with _warehouse(answer_within_s=CALLBACK_ANSWER_WITHIN_S) as conn:  # a callback asks, before its page
            if succeeded:
                return audit.run_published_at(conn, context["run_id"]) is not None
            return audit.validation_published_at(conn, context["run_id"], summary["validation_id"]) is not None
    except Exception as err:
        log.warning("could not read whether publish published: %s", err)
        return False


def send_validation_alert(context: Any, send: Callable[[dict[str, Any]], None]) -> None:
    """validate's own failure callback pages its failed checks when alert_slack will not run again, through ``send``
    (the callback's page, tried again within its budget: tasks/paging.py), which raises when it was not sent."""
    summary = validation_summary(context)
    if summary is None:
        raise RuntimeError("validate failed without a summary to alert with")
    deliver(
        summary,
        # Review: a warehouse that did not answer held the page back: it goes without this.
        _not_published(CALLBACK_ANSWER_WITHIN_S),
        attempt=runtime.clear_number(context),
        run_type=runtime.run_type(context),
        connect_timeout=CALLBACK_CONNECT_TIMEOUT_S,
        send=send,
    )


def send_alert(context: Any) -> None:
    """Page on-call about the run's checks; raises when Slack does not take the message (retries, then red)."""
    states = states_now(context)
    ran = states.get("validate") in ("success", "failed")  # else its summary is an earlier attempt's
    summary = validation_summary(context) if ran else None
    earlier = None  # the attempt of a summary set aside below
    if (
        summary is not None
        and summary.get("clear_number") != runtime.clear_number(context)
        and states.get("validate") != "success"  # one that succeeds pushed its own: it did not run in this attempt
    ):
        # validate ended in this attempt without a summary of its own (its process killed before it pushed one):
        # what XCom holds is an earlier attempt's. (A validate that succeeded did not run since: alert_slack was
        # cleared alone, as its failure says, and the summary is validate's latest; review: skipped, nothing sent.)
        earlier, summary = summary.get("clear_number"), None
    # Review: a task that failed could not page (no Slack connection, Slack refusing), and this said it had paged on
    # its own (before validate, or publish: then also "nothing to alert"). Red instead, naming it.
    failed = "publish" if states.get("publish") == "failed" else None
    if (summary is None or failed) and (unpaged := _not_paged(context, failed)):
        task_id, error = unpaged
        raise AirflowFailException(
            f"{task_id} failed in this attempt and on-call was NOT paged (Slack did not take its page): "
            f"{error.removesuffix(NOT_PAGED)}. Fix the Slack connection (its log says why), then the cause."
        )
    if summary is None and earlier is not None:
        raise AirflowSkipException(
            f"validate's result is an earlier attempt's ({earlier}) and validate failed: in this attempt without a"
            " result of its own (killed: the run's own callback pages), or before, and only alert_slack was cleared:"
            " to send its alert again, clear validate with its downstream tasks (the same build is checked again)"
        )
    if summary is None:
        which = "validate" if ran else "a task before validate"  # user trial: validate itself, marked failed by hand
        raise AirflowSkipException(
            f"no validation result in this attempt: {which} failed and paged on its own (its failure"
            " in the Data quality view says when on-call was NOT paged; killed, or marked failed by hand in the UI:"
            " the run's own failure callback pages)"
        )
    if not summary["blocking"] and states.get("publish") == "skipped":
        # Review: publish marked skipped by hand (it skips itself only on failed checks, which fail validate) left
        # a green run that published nothing, and this said "nothing to alert".
        raise AirflowFailException(
            "the checks passed but publish was skipped without publishing (marked by hand?): nothing of this run was"
            " published; readers still see the previous run. Clear publish with its downstream tasks."
        )
    route = alert_route.no_route()  # trial: a misspelt connection passed green on days whose warnings were suppressed
    told = repaired.announce(context, states.get("publish") == "success")  # an earlier attempt failed: it is done
    if not summary["failures"] and not summary.get("quarantined"):
        raise AirflowSkipException(f"nothing to alert: every check passed and no row was quarantined{told}{route}")
    if states.get("publish") == "failed":
        raise AirflowSkipException(
            "publish failed and paged on its own; the warnings and quarantine counts of this run are alerted by the"
            " attempt that publishes (clear publish with its downstream tasks); the Data quality view lists them"
        )
    if not summary["blocking"] and (off := alert_route.slack_off(route)):
        raise AirflowSkipException(f"not alerted: {text.found(summary)} in a run that published{off}{told}")
    published = (states.get("publish") == "success" and context["ti"].xcom_pull(task_ids="publish")) or (
        _not_published()
    )
    deliver(summary, published, attempt=runtime.clear_number(context), run_type=runtime.run_type(context))


# How long alert_slack waits for a failed task's callback to record its failure: Airflow starts the callback after
# the task reported its state (the scheduler may start alert_slack at once) and kills it 20 s later.
RECORD_WAIT_S, RECORD_POLL_S = 25.0, 1.0


def _not_paged(context: Any, task_id: str | None = None) -> tuple[str, str] | None:
    """The first failure on record in this attempt of the run whose page did not go (task id, error), if any. Until
    the failure of ``task_id`` (when given: a task that failed just before) is on record, its callback may still be
    paging: waited for (review: with Slack refusing, publish's callback tried for seconds, and alert_slack read no
    failure yet and skipped). A task before validate failed long before alert_slack runs: not waited for."""
    attempt = runtime.clear_number(context)
    deadline = time.monotonic() + RECORD_WAIT_S
    while True:
        try:
            with _warehouse() as conn:
                failures = audit.task_failures(conn, context["run_id"])
        except Exception as exc:  # the skip below still says where to look
            log.warning("could not read the run's task failures: %s", exc)
            return None
        mine = [f for f in failures if (attempt is None or f["clear_number"] == attempt)]
        for f in mine:
            if f["error"].endswith(NOT_PAGED):
                return f["task_id"], f["error"]
        if task_id in (None, *(f["task_id"] for f in mine)) or time.monotonic() + RECORD_POLL_S > deadline:
            return None  # none recorded in time: killed, or marked failed by hand; the run's own callback pages
        time.sleep(RECORD_POLL_S)


def alert_after_publish(
    summary: dict[str, Any], published: dict[str, Any], context: Any, send: Callable[[dict[str, Any]], None]
) -> None:
    """``publish``'s follow-up. After *Clear only failed tasks*, an ``alert_slack`` skipped by an earlier failure
    stays skipped: the warnings and quarantine counts of the attempt that publishes were never sent. When
    alert_slack will not run again, send them now through ``send`` (a page, tried again: tasks/paging.py), which
    raises when it did not go (review: publish stayed green and nobody was told; the caller fails the task)."""
    if alert_will_run(context):
        return
    repaired.announce(context, True)  # alert_slack would (second review: after *Clear only failed tasks*, none went)
    if not (summary.get("failures") or summary.get("quarantined")):
        return
    if off := alert_route.slack_off():  # review: publish failed after its commit where alert_slack skips
        log.info("not alerted: %s in a run that published%s", text.found(summary), off)
        return
    try:
        deliver(
            summary,
            published,
            attempt=runtime.clear_number(context),
            run_type=runtime.run_type(context),
            send=send,
            retried_task=True,
        )
    except AirflowSkipException as skip:
        log.info("alert_slack will not run again; %s", skip)


def _hold_back_what_was_paged(
    summary: dict[str, Any], signed: list[str], attempt: int | None, backfill: dt.timedelta | None
) -> None:
    """alert_slack's own post (or publish's) is held back (AirflowSkipException) when it was paged already, read in one
    connection:

    - by an earlier try of this attempt of the run (review: a try killed after it posted and recorded the alert,
      before it reported success, was retried and posted it again; a clear by hand is a new attempt: it sends);
    - for failed critical checks of a backfill run (``backfill``: the suppression window, else None), by another
      backfill run, all of them, within the window, no run published since: they page always, but once per root
      cause in a backfill (review: a duplicated key in raw paged once for every day of a 30-day backfill).

    Best effort: a warehouse that cannot be read sends the page (twice rather than not at all)."""
    try:
        with _warehouse() as conn:
            sent_at, paged = alerts_sent.sent_in_attempt(conn, summary["run_id"], attempt, signed), None
            if backfill is not None and not sent_at:
                critical = suppression.critical_signatures(summary)  # its warnings and quarantine not compared
                paged = alerts_sent.backfill_alert_with(conn, summary["run_id"], critical, backfill)
    except Exception as exc:
        log.warning("could not read whether this alert was paged already (sending it): %s", exc)
        return
    if sent_at:
        raise AirflowSkipException(
            f"already sent at {audit.utc_minute(sent_at)} by an earlier try of this attempt of the run (it ended"
            f" before it reported success): not sent twice; to send it again, {_resend(summary)}"
        )
    if paged:
        raise AirflowSkipException(
            f"held back: run {paged[0]} of a backfill paged these same failed checks at {audit.utc_minute(paged[1])}"
            " (one page per root cause); this day is blocked too, nothing of it published. Fix the cause, then"
            " clear the backfill's failed runs (whole, after a fix in raw; validate with its downstream tasks, after"
            " a fix of an expectation); the Data quality view lists them"
        )


def _resend(summary: dict[str, Any]) -> str:
    """How a user sends an alert again that did not go: alert_slack alone after passing checks (its summary is
    validate's latest); after failed checks validate failed, and alert_slack cleared alone cannot tell its result
    from one a killed validate left, so validate runs again."""
    if summary.get("blocking"):
        return links.run_again("clear validate with its downstream tasks")
    return "clear alert_slack alone"  # review: a whole run again would find the same warnings sent, and hold them back


def deliver(
    summary: dict[str, Any],
    published: dict[str, Any],
    *,
    attempt: int | None = None,
    run_type: str | None = None,
    connect_timeout: int | None = None,
    send: Callable[[dict[str, Any]], None] | None = None,
    retried_task: bool = False,
) -> None:
    """Send the alert unless this attempt of the run (``attempt``: its clear_number) sent it already or suppression
    holds it back (AirflowSkipException), and remember it with the run's ``run_type`` (a backfill's repeats of failed
    critical checks are held back). ``connect_timeout`` (seconds) bounds its warehouse connections (default
    CALLBACK_CONNECT_TIMEOUT_S); ``send`` replaces alert_slack's single post: a failure callback's page, which runs
    once, or, ``retried_task``, a task's that Airflow tries again (publish's), which an earlier try's holds back."""
    summary = {**for_on_call(summary), **{k: v for k, v in published.items() if k in ("published", "serving_run")}}
    # Every backfill alert takes turns (second review: warnings of four runs at once paged four times); a backfill's
    # failed critical checks are also held back once another run of it paged them.
    with alert_turns.taking_turns(run_type == "backfill" and send is None, CALLBACK_CONNECT_TIMEOUT_S, ANSWER_WITHIN_S):
        _deliver(summary, attempt, run_type, connect_timeout, send, retried_task)


def _deliver(summary, attempt, run_type, connect_timeout, send, retried_task: bool) -> None:
    settings = config.get()
    bound = ANSWER_WITHIN_S if send is None else CALLBACK_ANSWER_WITHIN_S  # send: a failure callback's page
    backfill = bool(summary.get("blocking")) and run_type == "backfill" and send is None  # its failed checks
    signed = suppression.recorded(summary)
    window = suppression.window(settings.alert_suppress)
    hours = f"{settings.alert_suppress.total_seconds() / 3600:g}"  # as the page and the skip say it
    # Not before a callback's page: it runs once, and reading first would eat its budget. publish's is retried (review:
    # a try killed after it posted and recorded the warnings, before it reported success, posted them again).
    if send is None or retried_task:
        _hold_back_what_was_paged(summary, signed, attempt, window if backfill else None)
        if backfill and settings.alert_suppress:  # the page says its repeats will not come (review: none said so)
            summary["backfill_hold_back_hours"] = hours
    if not summary.get("blocking"):  # failed critical checks always page: no warehouse read may hold that back (review)
        try:
            with _warehouse(connect_timeout, bound) as conn:
                recent = alerts_sent.recent_signatures(conn, window)
                # The day before this one, and the run validated last (a rerun of an older day): either found it too.
                before = [history.previous(conn, summary), history.latest(conn, summary)]
                # What one found that did not reach on-call makes this alert news.
                before = [b for b in before if b and not alerts_sent.undelivered(conn, str(b.get("run_id")))]
        except Exception as exc:  # review: a warehouse that did not answer held the warnings back: sent instead
            log.warning("could not read which alerts were sent (sending this one): %s", exc)
            recent, before = set(), []
        if any(suppression.held_back(summary, recent, b) for b in before):
            what = [f"{len(summary['root_causes'])} warning(s)"] * bool(summary["root_causes"])  # trial: "the same 0"
            what += ["quarantine counts"] * bool(summary.get("quarantined"))
            raise AirflowSkipException(
                f"suppressed: the same {' and '.join(what)} were alerted"
                f" within {hours} h (GREENERY_ALERT_SUPPRESS_HOURS); the Data quality view lists them"
            )
    try:
        if send is not None:
            send(messages.build_alert(summary))
        else:
            delivery.send(messages.build_alert(summary), settings.alert_conn_id, channel=settings.alert_channel)
    except delivery.SlackDeliveryError as exc:
        if exc.maybe_delivered:
            # Review: the task's retry posted the alert a second time. No retry: this task's failure pages once,
            # saying so, and a clear by hand sends it again if it never arrived. A backfill's failed checks are
            # recorded as sent: the other runs' turns must not post them again (second review: four runs, four posts).
            if backfill:
                _record(summary, signed, attempt, run_type, connect_timeout, bound)
            raise MaybePosted(
                f"{exc}: Slack took the alert and did not confirm it (no answer, or internal_error), so it may have"
                " been posted; not retried (it could page on-call twice)",
                next_step=f"Look for the alert in the channel; if it is missing, {_resend(summary)} to resend it.",
            ) from exc
        if exc.retryable:
            raise
        if exc.content_refused:
            raise AirflowFailException(
                f"{exc}: on-call was not paged; Slack refused the alert's content, not the connection (a bug in the"
                " alert's layout: report it); its failures are in the Data quality view and the validate log"
            ) from exc
        raise AirflowFailException(
            f"{exc}: on-call was not paged; retrying cannot fix this: correct the connection, then {_resend(summary)}"
        ) from exc
    log.info("alert sent through %s: %d root causes", settings.alert_conn_id, len(summary["root_causes"]))
    _record(summary, signed, attempt, run_type, connect_timeout, bound)


def _record(summary, signed: list[str], attempt, run_type, connect_timeout, bound: float) -> None:
    try:
        with _warehouse(connect_timeout, bound) as conn:
            alerts_sent.record(conn, summary["run_id"], signed, attempt, run_type)
    except Exception as exc:
        # The page went out: failing here would make the task's retry page on-call a second time. Unrecorded, the
        # same warnings may be sent once more by a later run instead of being held back.
        log.error("alert sent but not recorded for suppression (a later repeat may be sent again): %s", exc)
