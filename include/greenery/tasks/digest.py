"""The ``state_of_the_data`` task: the stakeholders' daily digest after a publish, in Slack and by email.

What it sends, each part only when its settings ask for it (all off by default):

- ``slack``: the Block Kit note (rows per mart, checks, repeat rate, the last 28 days as sparklines) through
  ``GREENERY_SUMMARY_CONN_ID``;
- ``slack-chart``: the trend chart as a PNG shared in the same channel right after the note, when that
  connection is an API-token one (a webhook cannot carry an image: its note has the sparklines only);
- ``email``: HTML with the chart inlined, and plain text, through the SMTP connection
  ``GREENERY_DIGEST_EMAIL_CONN_ID`` to ``GREENERY_DIGEST_EMAIL_TO``.

The task is *skipped*, with the reason, when nothing is asked for. Every part asked for is tried; if any
failed, the task fails naming each failure and what did go out. Each part that went out is recorded in
``greenery_audit.digests_sent`` against the run's publish, so a retry, or clearing the task after fixing a
connection, sends only what did not go out (stakeholders do not get the Slack note three times because
the SMTP password was wrong). A new publish of the run (the whole run cleared) is news: a new digest.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

import psycopg
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from psycopg import sql

from greenery import audit, config, links, locks, runtime, trend, warehouse
from greenery.alerts import chart, delivery, digest_email, digest_message, email_delivery, text
from greenery.project import models as model_files
from greenery.tasks.failures import Refused
from greenery.tasks.notify import validation_summary

log = logging.getLogger(__name__)


class DigestNotDelivered(RuntimeError):
    """A part of the digest that the settings ask for did not go out; the message lists what failed and why."""


def wanted(settings: config.Settings) -> list[str]:
    """The parts the settings ask for (the chart's connection type is checked when sending)."""
    parts = []
    if settings.summary_conn_id:
        parts += ["slack", "slack-chart"]
    elif settings.summary_channel:  # asked for, without its connection: fails (slack_settings_problem), not skipped
        parts.append("slack")
    if settings.digest_email_conn_id or settings.digest_email_to:
        parts.append("email")
    return parts


def slack_settings_problem(settings: config.Settings) -> str | None:
    """Why the Slack settings cannot work, or None (review: a channel without a connection skipped the digest as
    "off", while recipients without an SMTP connection failed)."""
    if settings.summary_channel and not settings.summary_conn_id:
        return (
            f"a channel is set (GREENERY_SUMMARY_CHANNEL={settings.summary_channel!r}) but no Slack connection:"
            " set GREENERY_SUMMARY_CONN_ID"
        )
    return None


def email_settings_problem(settings: config.Settings) -> str | None:
    """Why the email settings cannot work, or None."""
    if not settings.digest_email_conn_id:
        return "recipients are set (GREENERY_DIGEST_EMAIL_TO) but no SMTP connection: set GREENERY_DIGEST_EMAIL_CONN_ID"
    if not settings.digest_email_to:
        return (
            f"SMTP connection {settings.digest_email_conn_id!r} is set (GREENERY_DIGEST_EMAIL_CONN_ID) but no"
            " recipient: set GREENERY_DIGEST_EMAIL_TO (addresses separated by commas)"
        )
    bad = email_delivery.invalid_addresses(settings.digest_email_to)
    if bad:
        return f"GREENERY_DIGEST_EMAIL_TO holds {len(bad)} malformed address(es): {', '.join(map(repr, bad))}"
    return None


def read_stats(summary: dict[str, Any], went_out: Sequence[str] = ()) -> tuple[dict[str, Any], list[trend.Point]]:
    """What every part says: rows per mart, checks, repeat rate, links, and the last 28 days. ``went_out``: the parts
    an earlier attempt delivered (said when the digest is skipped)."""
    models = model_files.discover()
    marts = [m for m in models.values() if m.layer == "marts"]
    day = summary["logical_date"]
    # Under the shared publish lock, in one transaction: a publish of another run (overlapping runs) cannot swap
    # the marts between these reads, which would mix its counts with this run's.
    with warehouse.connect() as conn, conn.transaction():
        locks.share(conn)
        latest = audit.last_published(conn)
        # Review: after an attempt that sent the Slack note, not the email, the skip said nothing went out.
        sent = f" (an earlier attempt delivered: {', '.join(went_out)}; the rest is not sent)" if went_out else ""
        if (later := audit.latest_published_day(conn)) is not None and later > dt.date.fromisoformat(str(day)):
            # Review: `greenery run` over a range ending at the latest day (the raw-changed warning's command), or a
            # manual run of an old day, mailed the stakeholders each earlier day as the state of the data.
            raise AirflowSkipException(
                f"{later} is published already, a later day than this run's {day} (a replay of earlier days): its"
                f" digest would reach the stakeholders as the state of the data, behind what they were sent; not"
                f" sent{sent}; the digest of {later} reports the marts (nothing to clear)"
            )
        if latest is not None and latest["run_id"] != summary["run_id"]:
            # Review: sent again after a later publish (a clear of this task), it counted that publish's rows under
            # this run's day. Skipped, not failed (review: two overlapping runs, the later publish first, paged
            # on-call for nothing to do): the digest of the run readers see reports the marts.
            raise AirflowSkipException(
                f"the marts now hold the publish of run {latest['run_id']} ({latest['logical_date']}), after this"
                f" run's: its row counts are gone, so no digest for {day} is sent{sent}; the digest of run"
                f" {latest['run_id']} reports the marts readers see (nothing to clear)"
            )
        rows = {
            m.relation: conn.execute(
                sql.SQL("select count(*) from {}").format(sql.Identifier(m.layer, m.name))
            ).fetchone()[0]
            for m in marts
        }
        found = conn.execute("select repeat_rate from marts.metrics_daily where as_of_date = %s", (day,)).fetchone()
        points = trend.read(conn, dt.date.fromisoformat(str(day)))
    stats = {
        "dag_id": summary["dag_id"],
        "logical_date": day,
        "rows": rows,
        "checks_passed": summary["evaluated"] - summary["failed_critical"] - summary["failed_warning"],
        "checks_evaluated": summary["evaluated"],
        "checks_scope": text.checked_in(
            len(summary.get("suites") or []), len(models) - len(summary.get("kept_unchecked") or [])
        ),
        # Info results pass by design ("too little history for the anomaly checks"): counted as passed, said apart.
        "notes": sorted({str(n.get("description")) for n in summary.get("notes") or [] if n.get("description")}),
        "repeat_rate": float(found[0]) if found and found[0] is not None else None,
        "quarantined": summary.get("quarantined") or {},
        "quarantined_rules": summary.get("quarantined_rules") or {},
        "links": links.for_run(summary["run_id"]),
        "trend": trend.as_json(points),
    }
    return stats, points


def _send_slack(settings, stats, png, points, done) -> dict:
    problem = slack_settings_problem(settings)
    if problem:  # not retried: only the settings can fix it
        raise delivery.SlackDeliveryError(f"Slack note not sent: {problem}", conn_id="-", retryable=False)
    payload = digest_message.build_summary_message(stats)
    return delivery.send(payload, settings.summary_conn_id, settings.summary_channel) or {}


def _send_chart(settings, stats, png, points, done) -> dict | None:
    """None when the connection cannot carry an image (a webhook): its note already has the sparklines."""
    if delivery.conn_type_of(settings.summary_conn_id) != delivery.API_CONN_TYPE:
        log.info("connection %r is not an API-token one: the chart goes as sparklines only", settings.summary_conn_id)
        return None
    posted = done.get("slack") or {}
    if not posted.get("channel"):
        # Not retryable of its own: the note's failure decides whether the task is worth retrying.
        raise delivery.SlackDeliveryError(
            "the chart follows the Slack note, which was not posted", conn_id=settings.summary_conn_id, retryable=False
        )
    delivery.upload_image(
        png,
        settings.summary_conn_id,
        posted["channel"],
        filename=f"greenery-trend-{stats['logical_date']}.png",
        title=f"Greenery, last {len(points)} days to {stats['logical_date']}",
        alt_text=chart.describe(points),
        comment=f"Last {len(points)} days: repeat rate, session conversion, orders per day",
    )
    return {"channel": posted["channel"]}


def _send_email(settings, stats, png, points, done) -> dict:
    problem = email_settings_problem(settings)
    if problem:  # not retried: only the settings can fix it
        raise email_delivery.EmailDeliveryError(
            f"email not sent: {problem}", conn_id=settings.digest_email_conn_id or "-", retryable=False
        )
    sender = email_delivery.sender_of(settings.digest_email_conn_id)
    already = _emailed(done)  # a retry does not send them a second copy (whatever the case the server echoed)
    recipients = [r for r in settings.digest_email_to if r.casefold() not in {a.casefold() for a in already}]
    if not recipients:  # the refused address was removed from the setting; everyone else has the email
        return {"to": already}
    message = digest_email.build(stats, points, png, sender=sender, recipients=recipients)
    return {"to": [*already, *email_delivery.send(message, settings.digest_email_conn_id)]}


# An email some recipients got (the server refused others): remembered, so that a retry sends to the others only.
EMAIL_SO_FAR = "email-so-far"


def _emailed(done: dict[str, dict]) -> list[str]:
    return (done.get(EMAIL_SO_FAR) or {}).get("to", [])


_SENDERS = {"slack": _send_slack, "slack-chart": _send_chart, "email": _send_email}
_PART_NAMES = {"slack": "the Slack note", "slack-chart": "the chart in Slack", "email": "the email"}


def _this_attempts_publish(conn, context: Any, summary: dict[str, Any]) -> dt.datetime:
    """When this attempt of the run published what its validation checked; Refused when it published nothing."""
    run_id = summary["run_id"]
    # This attempt's publish, not the run's: a run published, cleared, and its new attempt's publish marked success by
    # hand got a digest of figures nobody published (review). And the build's: validate marked success too leaves the
    # earlier attempt's summary in XCom, whose validation was published then, while this attempt's build is not (its
    # prepare set it building again; a rebuild's publish, a publish retried or cleared alone, leave it published).
    published_at = audit.validation_published_at(conn, run_id, summary.get("validation_id"))
    if published_at is None or audit.build_state(conn, runtime.build(context).key) not in (None, "published"):
        earlier = audit.run_published_at(conn, run_id)
        also = f" (an earlier attempt of the run published, at {audit.utc_minute(earlier)})" if earlier else ""
        raise Refused(  # no retries: they would find the same
            f"run {run_id} published nothing in this attempt{also}: its publish task was marked success, or never"
            " ran; readers still see an earlier publish, and no digest goes out of marts it did not publish."
            " Clear the whole run to build and publish it.",
            next_step=f"Clear the whole run ({links.CLEAR_IN_THE_GRID}) to build and publish it; its digest follows."
            " Clearing state_of_the_data alone fails again.",
            published=False,
        )
    return published_at


def send(context: Any) -> None:
    """Send every part of the digest the settings ask for; skip when none, raise if any failed. First, digest on or
    off, fail (and page) when this attempt of the run published nothing: its publish was marked success by hand, and
    the run would otherwise end green (review: with the digest off, the default, nothing else looks)."""
    settings = config.get()
    parts = wanted(settings)
    summary = validation_summary(context)
    if summary is None:  # review: a TypeError, retried, and a page that said nothing of why
        raise Refused(
            f"run {context['run_id']} has no validation of its own: validate was marked success by hand, or never ran:"
            " nothing it checked was published, and no digest goes out of marts nobody checked. Clear the whole run to"
            " build, check and publish it.",
            next_step=f"Clear the whole run ({links.CLEAR_IN_THE_GRID}); its digest follows.",
            published=False,
        )
    run_id = summary["run_id"]
    if not parts:
        try:
            with warehouse.connect() as conn:
                _this_attempts_publish(conn, context, summary)
        except (warehouse.WarehouseUnavailableError, psycopg.OperationalError) as exc:
            # publish reported success; a warehouse that does not answer now must not page "nothing was published"
            # (review): said, and skipped like the rest of an off digest.
            log.warning("could not read whether this attempt published: %s", exc)
        raise AirflowSkipException(
            "the state-of-the-data digest is off: set GREENERY_SUMMARY_CONN_ID (Slack) and/or"
            " GREENERY_DIGEST_EMAIL_CONN_ID with GREENERY_DIGEST_EMAIL_TO (email)"
        )
    with warehouse.connect() as conn:
        published_at = _this_attempts_publish(conn, context, summary)
        done = audit.digests_sent(conn, run_id, published_at)
    if runtime.run_type(context) == "backfill":  # review: a year's backfill mailed the stakeholders 365 times
        raise AirflowSkipException(
            "a backfill run sends no digest (one per day would reach the stakeholders as many times as the backfill"
            " has days): the next scheduled run's digest shows the last 28 days as published, these included"
        )
    went_out = [_PART_NAMES[part] for part in parts if part in done]
    if "email" not in done and _emailed(done):
        went_out.append(f"the email to {', '.join(_emailed(done))}")
    stats, points = read_stats(summary, went_out)
    png = chart.render_png(points)
    failures, sent, maybe_sent, misconfigured, unrecorded = [], [], [], [], []
    earlier = [part for part in parts if part in done]  # went out in an earlier attempt of this publish
    for part in parts:
        if part in done:
            log.info("digest part %r already went out for this publish (%s): not sent again", part, published_at)
            continue
        try:
            detail = _SENDERS[part](settings, stats, png, points, done)
        except (delivery.SlackDeliveryError, email_delivery.EmailDeliveryError) as err:
            log.error("digest part %r not delivered: %s", part, err)
            failures.append(f"{part}: {err}")
            if err.maybe_delivered:  # sent, and the answer never came (Slack's or the SMTP server's)
                maybe_sent.append(part)
            if not err.retryable:  # review: a Slack configuration error was retried, then an email one
                misconfigured.append(part)
            if isinstance(err, email_delivery.EmailDeliveryError) and err.delivered:
                so_far = {"to": [*_emailed(done), *err.delivered]}
                try:
                    with warehouse.connect() as conn:
                        audit.record_digest(conn, run_id, EMAIL_SO_FAR, published_at, so_far)
                except Exception as exc:  # as a delivered part's record below (review)
                    log.error("email to %s delivered but not recorded: %s", ", ".join(err.delivered), exc)
                    unrecorded.append("email (to some recipients)")
            continue
        if detail is None:
            continue
        done[part] = detail
        sent.append(part)
        log.info("digest part %r delivered: %s", part, detail)
        try:
            with warehouse.connect() as conn:
                audit.record_digest(conn, run_id, part, published_at, detail)
        except Exception as exc:  # it went out: the task's retry must not send it again (review: posted twice)
            log.error("digest part %r delivered but not recorded (a clear would send it again): %s", part, exc)
            unrecorded.append(part)
    if unrecorded and failures:
        # A retry would send the unrecorded parts a second time: no retry, and what went out is said.
        raise AirflowFailException(
            f"state-of-the-data digest for {stats['logical_date']}: {', '.join(unrecorded)} delivered but not recorded"
            f" (the warehouse failed after the send), so the task is not retried; clear state_of_the_data to send what"
            f" is missing once the warehouse answers (it sends {', '.join(unrecorded)} again): " + " | ".join(failures)
        )
    if failures:
        # Review: the parts an earlier attempt delivered went unsaid, and read as not delivered at all.
        said = [f"delivered: {', '.join(sent)}"] if sent else []
        said += [f"delivered by an earlier attempt: {', '.join(earlier)}"] if earlier else []
        also = f" ({'; '.join(said)})" if said else ""
        if maybe_sent:  # review: the retry posted the note a second time, then mailed everyone a second copy
            where = " or ".join(
                dict.fromkeys("in a recipient's inbox" if p == "email" else "in the channel" for p in maybe_sent)
            )
            raise AirflowFailException(
                f"state-of-the-data digest for {stats['logical_date']}: {', '.join(maybe_sent)} went out"
                " unconfirmed (no answer from the server, or Slack's internal_error) and may have been delivered, so"
                f" the task is not retried{also}; look {where}, and clear state_of_the_data to send what is missing: "
                + " | ".join(failures)
            )
        if len(misconfigured) == len(failures):
            raise AirflowFailException(
                f"state-of-the-data digest for {stats['logical_date']} not fully delivered{also}, not retried (retrying"
                " cannot fix a connection's settings): correct them, then clear state_of_the_data to send what is"
                " missing: " + " | ".join(failures)
            )
        raise DigestNotDelivered(
            f"state-of-the-data digest for {stats['logical_date']} not fully delivered{also}: " + " | ".join(failures)
        )
