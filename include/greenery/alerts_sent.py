"""The record of the alerts sent to on-call (``greenery_audit.alerts_sent``): each with its signatures (see
alerts/suppression.py), the attempt of the run that sent it and the run's type.

Read to hold back what was paged already: an unchanged warning within the suppression window, a retry of the same
attempt, a backfill's repeats of one root cause; and to send the notice that a run is repaired once per repair.
"""

from __future__ import annotations

import datetime as dt

from psycopg import sql
from psycopg.types.json import Jsonb

from greenery import audit

REPAIRED = "repaired"  # the signature of the notice that a run is repaired (tasks/repaired.py)


def record(conn, run_id: str, signatures: list, clear_number: int | None = None, run_type: str | None = None) -> None:
    audit.ensure(conn)
    with conn.transaction():
        conn.execute(
            sql.SQL(
                "insert into {} (run_id, sent_at, signatures, clear_number, run_type) values (%s, now(), %s, %s, %s)"
            ).format(audit.table("alerts_sent")),
            (run_id, Jsonb(signatures), clear_number, run_type),
        )


def backfill_alert_with(conn, run_id: str, signatures: list, window: dt.timedelta) -> tuple[str, dt.datetime] | None:
    """The latest alert another run of a backfill sent within ``window`` that held every one of ``signatures`` (none:
    no alert), with no run published since: a problem that came back after a repair is news (review: a backfill's
    relapse within the day was held back behind the page before the repair, and the channel's last word was
    "repaired")."""
    if not signatures or not audit.readable(conn, "alerts_sent"):
        return None
    # A run's passing checks are recorded when it publishes.
    passed_since = _none_in(conn, "validation_runs", "v where v.published and v.validated_at > a.sent_at")
    return conn.execute(
        sql.SQL(
            "select run_id, sent_at from {} a where run_type = 'backfill' and run_id <> %s and sent_at > now() - %s"
            " and signatures @> %s{} order by sent_at desc limit 1"
        ).format(audit.table("alerts_sent"), passed_since),
        (run_id, window, Jsonb(signatures)),
    ).fetchone()


def undelivered(conn, run_id: str) -> bool:
    """Whether the run's alert did not reach on-call: its ``alert_slack`` (or ``publish``, which sends a published
    run's warnings when alert_slack will not) failed, and no alert of the run was sent after. Such a run does not
    hold the next one's repeat back (user trial: Slack down, the recurrence's alert failed; the next run found it a
    repeat of a page sent before the problem went away, and nobody heard of it)."""
    if not audit.exists(conn, "task_failures"):
        return False
    sent_after = _none_in(conn, "alerts_sent", "a where a.run_id = f.run_id and a.sent_at > f.failed_at")
    return conn.execute(
        sql.SQL(
            "select exists (select from {} f where f.run_id = %s and f.task_id in ('alert_slack', 'publish'){})"
        ).format(audit.table("task_failures"), sent_after),
        (run_id,),
    ).fetchone()[0]


def _none_in(conn, table: str, rows: str) -> sql.Composable:
    """`` and not exists (select from <table> <rows>)`` (``rows``: an alias and a condition, this module's own text),
    or nothing before ``table`` exists (an older or a new warehouse)."""
    if not audit.exists(conn, table):
        return sql.SQL("")
    return sql.SQL(" and not exists (select from {} " + rows + ")").format(audit.table(table))


def sent_in_attempt(conn, run_id: str, clear_number: int | None, signatures: list) -> dt.datetime | None:
    """When this attempt of the run (its ``clear_number``) already sent an alert with exactly these signatures."""
    if not audit.readable(conn, "alerts_sent"):
        return None
    return conn.execute(
        sql.SQL(
            "select max(sent_at) from {} where run_id = %s and clear_number is not distinct from %s and signatures = %s"
        ).format(audit.table("alerts_sent")),
        (run_id, clear_number, Jsonb(signatures)),
    ).fetchone()[0]


def recent_signatures(conn, window: dt.timedelta) -> set[str]:
    """The signatures (see alerts.suppression) of the alerts sent within ``window``."""
    if not audit.exists(conn, "alerts_sent"):
        return set()
    rows = conn.execute(
        sql.SQL("select signatures from {} where sent_at > now() - %s").format(audit.table("alerts_sent")), (window,)
    ).fetchall()
    return {s for (signatures,) in rows for s in signatures}


def last_with(conn, run_id: str, signatures: list) -> tuple[dt.datetime, int | None] | None:
    """When the run last sent an alert with exactly these signatures, and in which attempt; None when it never did."""
    if not audit.readable(conn, "alerts_sent"):
        return None
    return conn.execute(
        sql.SQL(
            "select sent_at, clear_number from {} where run_id = %s and signatures = %s order by sent_at desc limit 1"
        ).format(audit.table("alerts_sent")),
        (run_id, Jsonb(signatures)),
    ).fetchone()
