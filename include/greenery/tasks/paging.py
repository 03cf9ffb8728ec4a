"""Paging on-call: every way a task fails pages the alert channel exactly once, with the cause.

Tasks that page by themselves (the source-freshness alert) or leave the page to ``alert_slack`` (failed
checks) raise a ``tasks.failures`` exception, and the failure callback does not page again, unless
``alert_slack`` has already ended in this run: then it sends that alert itself. Any other failure, including
Airflow's own (a timeout, a task killed and detected by the scheduler), reaches the callback, which pages
with the exception. A failed Slack delivery cannot be paged through Slack: it stays in the task log.

The page goes before anything touches the warehouse, and within a budget: Airflow runs a failure callback after
the task reported its failure and kills it 20 s later (``task_success_overtime``), so a callback that first waited
on a warehouse that accepts and never answers was killed before it paged. A page Slack refuses for a while (429,
5xx, a transient Web API error such as ``ratelimited``, unreachable) is tried again inside that budget.
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any

import psycopg
from airflow.sdk.exceptions import AirflowSkipException

from greenery import audit, config, docs, links, runtime, warehouse
from greenery.alerts import delivery, messages
from greenery.alerts.delivery import SlackDeliveryError
from greenery.errors import USER_STOPPED
from greenery.tasks import notify, page_claims
from greenery.tasks.failures import (
    MAYBE_PAGED,
    NOT_PAGED,
    AlertFollows,
    MaybePosted,
    PagedFailure,
    PublishedAlertNotSent,
    Refused,
)

log = logging.getLogger(__name__)


# Seconds a failure callback may spend paging (Airflow kills it 20 s after the task reported its failure), and
# what each Slack try and the warehouse connection afterwards may take.
PAGE_BUDGET_S = 12.0
# The page and then the record of the failure, with room under Airflow's 20 s: psycopg waits at least 2 s per
# connection attempt, per address the host resolves to (review).
CALLBACK_BUDGET_S = 15.0
RECORD_FOR_S, RECORD_PAUSE_S = 6.0, 1.0  # a warehouse blinking, not one down (each failed task would wait longer)
SLACK_TRY_TIMEOUT_S = 10
BACKOFF_S = (1.0, 2.0)
WAREHOUSE_CONNECT_TIMEOUT_S = notify.CALLBACK_CONNECT_TIMEOUT_S
RUN_READS_WITHIN_S = 5  # the run's callback reads before it may page: a warehouse that stops answering must not hold it

# What page() tells its caller. MAYBE_SENT: the post went out and no answer came (a read timeout, a dropped
# connection), or Slack answered an error after which it may have posted it (internal_error, fatal_error): nobody may
# page again, and what follows must say to look in the channel.
SENT, MAYBE_SENT, NOT_SENT = "sent", "may have been posted", "not sent"


def _worth_retrying(exc: SlackDeliveryError) -> bool:
    """Refused for now (429, 5xx, a transient Web API error) or never sent (unreachable); not a request Slack may
    have posted (unanswered, or an internal_error): a second try could page twice."""
    return exc.retryable and not exc.maybe_delivered


def page(payload: dict[str, Any], budget_s: float = PAGE_BUDGET_S) -> str:
    """Send ``payload`` to the alert channel, again after a refusal worth retrying while ``budget_s`` lasts; never
    raise (the caller fails anyway). Return SENT, MAYBE_SENT (it went out unanswered: not to be sent again) or
    NOT_SENT."""
    settings, _ = config.get_lenient()  # a bad setting is what it may be paging about
    deadline = time.monotonic() + budget_s
    for attempt in range(len(BACKOFF_S) + 1):
        left = deadline - time.monotonic()
        try:
            delivery.send(
                payload,
                settings.alert_conn_id,
                channel=settings.alert_channel,
                timeout=max(1, min(SLACK_TRY_TIMEOUT_S, int(left))),
            )
            return SENT
        except SlackDeliveryError as exc:
            if exc.maybe_delivered:
                log.error("page may have been posted (try %d); not sent again: %s", attempt + 1, exc)
                return MAYBE_SENT
            wait = exc.retry_after if exc.retry_after is not None else BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
            if attempt == len(BACKOFF_S) or not _worth_retrying(exc) or time.monotonic() + wait + 1 > deadline:
                log.error("could not page on-call (try %d): %s", attempt + 1, exc)
                return NOT_SENT
            log.warning("page refused (try %d), again in %.1fs: %s", attempt + 1, wait, exc)
            time.sleep(wait)
        except Exception as exc:
            log.error("could not page on-call: %s", exc)
            return NOT_SENT
    return NOT_SENT


def record(context: Any, error: str, deadline: float | None = None) -> None:
    """Keep the failure in greenery_audit.task_failures (best effort: the warehouse may be what failed), tried again
    until ``deadline`` (time.monotonic()): the run's own failure callback pages a run whose failure is not on record
    (review: a warehouse restarting under the task's callback got one failure two pages)."""
    deadline = deadline if deadline is not None else time.monotonic() + WAREHOUSE_CONNECT_TIMEOUT_S
    for attempt in itertools.count(1):
        try:
            timeout = max(2, min(WAREHOUSE_CONNECT_TIMEOUT_S, int(deadline - time.monotonic())))
            within = max(1.0, deadline - time.monotonic())  # a warehouse that stops answering once connected too
            with warehouse.connect_answering_within(
                within, "the task failure's record", connect_timeout=timeout
            ) as conn:
                audit.record_task_failure(
                    conn,
                    context["run_id"],
                    runtime.task_id(context),
                    runtime.interval(context).day,
                    error,
                    clear_number=runtime.clear_number(context),
                )
            return
        except Exception as exc:
            unreachable = isinstance(exc, psycopg.OperationalError | warehouse.WarehouseUnavailableError)
            unreachable = unreachable and not isinstance(exc, warehouse.ConnectionSettingError)  # not a blink
            if not unreachable or time.monotonic() + RECORD_PAUSE_S + 2 > deadline:  # only a blink is waited for
                log.warning("task failure not recorded in the warehouse (try %d): %s", attempt, exc)
                return
            log.warning("task failure not recorded yet (try %d), again in %.0fs: %s", attempt, RECORD_PAUSE_S, exc)
            time.sleep(RECORD_PAUSE_S)


def on_task_failure(context: Any) -> None:
    """The DAG's ``on_failure_callback``: page with the error unless the task paged already; then record it."""
    started = time.monotonic()
    exc = context.get("exception")
    sent = NOT_SENT  # unless _page_for says otherwise (it may itself fail before paging)
    try:
        sent = _page_for(context, exc)
    finally:
        # Review: with Slack unreachable or no connection, the failure on record (the Data quality view) read as if
        # on-call had been told; it says so when they were not.
        error = describe(exc) + {NOT_SENT: NOT_PAGED, MAYBE_SENT: MAYBE_PAGED}.get(sent, "")
        record(context, error, deadline=min(started + CALLBACK_BUDGET_S, time.monotonic() + RECORD_FOR_S))


def alert_not_sent_after_publish(exc: Exception) -> Exception:
    """``publish``'s failure when the warnings alert it sends after its commit (alert_slack will not run again) did
    not go: retried, unless Slack may have posted it (a retry could page twice)."""
    resend = "clear publish alone: it does not publish again, it sends this run's warnings alert"
    if isinstance(exc, _PageOutcome) and exc.sent == MAYBE_SENT:
        return MaybePosted(
            "the marts WERE published; the run's warnings alert may have been posted (Slack did not answer); not"
            " retried (it could page on-call twice)",
            next_step=f"Look for the alert in the channel; if it is missing, {resend}.",
            published=True,
        )
    return PublishedAlertNotSent(
        f"the marts WERE published; the run's warnings alert, which alert_slack will not send (it ended), was not"
        f" sent: {exc}",
        next_step=f"Fix what kept it from Slack (the task log says why), then {resend}.",
    )


class _PageOutcome(Exception):
    """A page was not sent, or may have been (``sent``: NOT_SENT or MAYBE_SENT); page() logged why."""

    def __init__(self, sent: str) -> None:
        super().__init__(f"the page was {sent}")
        self.sent = sent


def send_or_raise(payload: dict[str, Any], budget_s: float = PAGE_BUDGET_S) -> None:
    """:func:`page`, raising unless it was sent: for notify.deliver's ``send`` (tried again within ``budget_s``)."""
    if (sent := page(payload, budget_s)) != SENT:
        raise _PageOutcome(sent)


def _page_for(context: Any, exc: BaseException | None) -> str | None:
    """Page for the task's failure unless another page covers it; the page's outcome, None when none was due."""
    began = time.monotonic()  # the page gets what is left of its budget once its payload is made (a warehouse read)
    if isinstance(exc, AlertFollows) and not notify.alert_will_run(context):
        # alert_slack already ended in this run and will not run again (only the failed tasks were cleared, or a
        # Mark success/failed cleared them): the page it would have sent goes now, tried again as every page is
        # (review: one 429 dropped it, and nobody was paged about the failed checks).
        started = time.monotonic()

        def send(payload: dict[str, Any]) -> None:
            send_or_raise(payload, max(1.0, PAGE_BUDGET_S - (time.monotonic() - started)))

        try:
            notify.send_validation_alert(context, send)
        except AirflowSkipException as held:  # suppression (never for a blocking summary)
            log.info("failed checks not paged again: %s", held)
            return None
        except _PageOutcome as outcome:  # page() logged why (review: "may have been posted" was told "NOT paged")
            return outcome.sent
        except Exception as err:  # a callback must not raise; the task is red anyway
            log.error("could not page on-call with the failed checks: %s", err)
            return NOT_SENT
        return SENT
    if isinstance(exc, PagedFailure):
        return None
    if isinstance(exc, SlackDeliveryError):
        log.error("not paging: the failure is Slack's own (%s)", exc)
        return NOT_SENT
    if isinstance(exc, KeyboardInterrupt):  # `greenery run` stopped by its user, who knows (dev/cli_runs.py)
        log.warning("not paging: stopped by the user (Ctrl-C or SIGTERM)")
        return None
    if first := page_claims.covered_by(context, page_claims.cause_of(exc, describe(exc))):
        log.warning("not paging: %s failed first with the same error, and its page covers this task", first)
        return None
    interval = runtime.interval(context)
    sent = page(
        messages.build_task_failure_alert(
            dag_id=runtime.dag_id(context),
            task_id=runtime.task_id(context),
            logical_date=interval.day.isoformat(),
            run_id=context["run_id"],
            error=describe(exc),
            log_url=runtime.log_url(context),
            links=links.for_run(context["run_id"], runtime.task_id(context)),
            published=_published(exc, context),
            next_step=getattr(exc, "next_step", None),  # failures.MaybePosted: look in the channel, not clear the run
            mention=_owner_mention(runtime.task_id(context)),
        ),
        max(1.0, PAGE_BUDGET_S - (time.monotonic() - began)),
    )
    log.warning("task failure page to on-call: %s", sent)
    page_claims.settle(context, sent in (SENT, MAYBE_SENT))
    return sent


def _owner_mention(task_id: str) -> str | None:
    """The Slack handle of the owner of the model ``task_id`` builds (review: a model's failure named nobody, where a
    failed check of its table mentions its owner); None for other tasks, or when the docs cannot be read (what
    failed may be them)."""
    try:
        return (docs.owner_of(task_id) or {}).get("slack")
    except Exception as exc:
        log.warning("the page names no owner: %s", exc)
        return None


def _published(exc: BaseException | None, context: Any) -> bool:
    """Whether the page says the marts went out: as the failure knows it (after publish's commit; an attempt that
    published nothing), else as the run's state and the publish on record say."""
    said = getattr(exc, "published", None)
    return said if isinstance(said, bool) else notify.published_in_this_run(context, exc)


def on_run_failure(context: Any) -> None:
    """The DAG's own ``on_failure_callback``, a backstop. Airflow runs no task failure callback for a task whose
    process was killed (out of memory, ``kill -9``: apache/airflow#60858) or that was marked failed by hand; the
    run then failed and nobody was paged. It pages once when no task of this attempt of the run recorded a failure,
    when the run's last failed task did not (others did: review, ``alert_slack`` killed after validate left it the
    failed checks paged nobody), or when that task's page did not go (Slack refused it then: it may take it now).
    When the warehouse cannot be read, the tasks' own pages stand (they had it fail too)."""
    run_id = context.get("run_id") or "?"
    attempt = runtime.clear_number(context)
    task = runtime.task_id(context)
    known = task != "?"  # Airflow names no last task when none ran in this attempt
    try:
        failures, build_day, unrecordable = _recorded(context, run_id, attempt, task if known else None)
    except Exception as exc:
        log.warning("run %s failed; its recorded failures cannot be read (%s): not paging again", run_id, exc)
        return
    # Without run details (Airflow gave no last task instance) the attempt cannot be told: then it pages.
    mine = [f for f in failures if attempt is not None and f["clear_number"] == attempt]
    last = [f for f in mine if f["task_id"] == task] if known else mine[-1:]
    if last and not last[-1]["error"].endswith(NOT_PAGED):
        return  # the task paged (or left its page to alert_slack) and recorded it
    if known and page_claims.claim_of(context, task, attempt) in (page_claims.SENT, page_claims.COVERED):
        return  # its own callback paged; the warehouse lost its record (diff review: paged twice, "killed")
    if mine and not last and any(f["task_id"] == task for f in failures):
        return  # the task an earlier attempt left red, which recorded and paged it then; this attempt's tasks too
    try:
        day = runtime.interval(context).day.isoformat()
    except (KeyError, AttributeError):  # a context without the run's details: the run's build knows its day
        day = next((str(f["logical_date"]) for f in failures), None) or build_day
    if last:
        said = last[-1]["error"].removesuffix(NOT_PAGED)
        error = f"{last[-1]['task_id']} failed, and its page did not reach on-call then (tried again now): {said}"
    elif mine:
        others = "; ".join(f"{f['task_id']}: {f['error'].strip().splitlines()[0][:300]}" for f in mine)
        error = (
            f"{task} failed without recording its failure in this attempt of the run (Airflow:"
            f" {context.get('reason') or '-'}): its process was killed (out of memory, kill -9) or it was marked"
            f" failed by hand, so what it was to do did not happen (or the warehouse did not answer when its own"
            f" page went out: that page came first). Recorded in this attempt: {others}. Its red tasks are in the Grid."
        )
    else:
        error = (
            f"no task recorded a failure in this attempt of the run (Airflow: {context.get('reason') or '-'}):"
            + (
                f" the warehouse's role may not create {audit.SCHEMA} (no create on the database), so no failure"
                " can be recorded: a failed task's own page says why, or the first task was killed first."
                if unrecordable
                else " a task's process was killed (out of memory, kill -9), a task was marked"
                " failed by hand, tasks an earlier attempt left red (upstream_failed) were not cleared with it,"
                " or the warehouse did not answer when a failed task's own page went out (that page came first)."
            )
            + (f" The run's last task: {task}." if known else "")
            # Review: it said to clear the first red task with its downstream tasks, the page's next step to
            # clear the whole run; the whole run also takes the tasks an earlier attempt left red.
            + " Its red tasks are in the Grid."
        )
    sent = page(
        messages.build_task_failure_alert(
            dag_id=runtime.dag_id(context),
            task_id=task,
            logical_date=day,
            run_id=run_id,
            error=error,
            log_url=runtime.log_url(context) if known else None,
            links=links.for_run(run_id, task if known else None),
            published=notify.published_in_this_run(context),
            mention=_owner_mention(task),
        )
    )
    log.warning("run failure page to on-call: %s", sent)


# How long the run's callback waits for its last failed task's record while that task's callback may still be paging
# (its claim says so, or other tasks of the attempt recorded theirs): Airflow may mark the run failed while it runs
# (it has 20 s), and a page from here as well would be a second. Within the DAG processor's 50 s for the callback.
LAST_RECORD_WAIT_S, LAST_RECORD_POLL_S = 15.0, 1.0


def _recorded(context: Any, run_id: str, attempt: int | None, task: str | None) -> tuple[list[dict], Any, bool]:
    """The run's recorded failures, its build's day, and whether its role cannot record any; waiting for ``task``'s
    record while its callback may still be running."""
    deadline = time.monotonic() + LAST_RECORD_WAIT_S
    while True:
        with warehouse.connect_answering_within(
            RUN_READS_WITHIN_S, "the run's recorded failures", connect_timeout=WAREHOUSE_CONNECT_TIMEOUT_S
        ) as conn:
            failures = audit.task_failures(conn, run_id)
            build_day = audit.build_day(conn, run_id)  # the day, when Airflow's context does not give it
            # Review: a role that may not create greenery_audit could record no failure, and this page blamed a
            # killed task beside the failed task's own. It still pages (the first task may have been killed before
            # any page), saying why nothing was recorded.
            unrecordable = not audit.exists(conn, "task_failures") and "create" in warehouse.missing_privileges(conn)[2]
        mine = [f["task_id"] for f in failures if attempt is not None and f["clear_number"] == attempt]
        if task is None or task in mine or time.monotonic() + LAST_RECORD_POLL_S > deadline:
            return failures, build_day, unrecordable
        claim = page_claims.claim_of(context, task, attempt)
        if claim in (page_claims.SENT, page_claims.COVERED) or not (mine or claim == page_claims.PAGING):
            return failures, build_day, unrecordable  # paged; or nothing says a callback of it runs (killed)
        time.sleep(LAST_RECORD_POLL_S)


def describe(exc: BaseException | str | None) -> str:
    """The error as on-call should read it: its type when the message alone says little (timeouts)."""
    if exc is None:
        return "the task failed without an exception (killed, or its process stopped heartbeating)"
    if isinstance(exc, str):
        return exc
    text = str(exc).strip()
    name = type(exc).__name__
    if isinstance(exc, KeyboardInterrupt):  # review: recorded as "KeyboardInterrupt: -", the view's only word on it
        return USER_STOPPED
    if isinstance(exc, config.SettingError):
        return (
            f"bad setting: {text}. Correct it where the scheduler, DAG processor and workers read their environment,"
            " then clear the run: until then every run fails at its first task"
        )
    # Their messages say what failed:
    plain = ("ModelBuildError", "ModelSqlError", "WarehouseUnavailableError", "ConnectionSettingError")
    ours = isinstance(exc, PagedFailure | Refused | MaybePosted)  # user trial: "PagedFailure: source data not ready"
    return text if text and (name in plain or ours) else f"{name}: {text or '-'}"
