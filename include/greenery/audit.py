"""The pipeline's own bookkeeping in the warehouse, schema ``greenery_audit``.

- ``builds``: one row per run's build (its schemas), with the run's clock recorded once and its state;
- ``build_models``: the models a build holds that are not published yet (what publish must find), each with
  the build of it that a passing validation checked (``validated_built_at``: publish refuses any other);
- ``publish_log``: every publish (run, day, tables);
- ``validation_runs``: every run's validation summary (the Data quality view and on-call read it);
- ``task_failures``: every task failure with its error (the CLI and the Data quality view say why a run failed);
- ``alerts_sent``: what each data-check alert reported, so an unchanged warning is not sent again too soon;
- ``data_docs``: each validation's GX Data Docs pages and the GX results they render (the Data quality view
  serves them): in the warehouse, which every component reaches, and never on a worker's disk;
- ``digests_sent``: each part of the stakeholder digest (Slack note, its chart, email) that went out for a
  run's publish, so a retry of the task sends only what failed.

Rows are never deleted: they are the history of what was built, checked and published.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from psycopg import sql
from psycopg.types.json import Jsonb

from greenery import locks
from greenery.checks.docs_pages import DocsPage
from greenery.redaction import redact

SCHEMA = "greenery_audit"

TABLES = {
    "builds": (
        "key text primary key, run_id text not null, logical_date date not null, run_time timestamptz not null,"
        " created_at timestamptz not null, touched_at timestamptz not null, state text not null,"
        " raw_fingerprint jsonb"
    ),
    "build_models": "key text not null, model text not null, built_at timestamptz not null, info jsonb,"
    " primary key (key, model)",
    "publish_log": "run_id text not null, logical_date date not null, published_at timestamptz not null,"
    " tables text[] not null",
    "validation_runs": "run_id text not null, logical_date date not null, validated_at timestamptz not null,"
    " published boolean not null, summary jsonb not null",
    # clear_number: Airflow's count of the run's clears when the task failed (which attempt of the run it was).
    "task_failures": "run_id text not null, task_id text not null, logical_date date not null,"
    " failed_at timestamptz not null, error text not null, clear_number integer",
    # clear_number: the attempt of the run that sent it (a retry of the same attempt does not send it twice).
    "alerts_sent": "run_id text not null, sent_at timestamptz not null, signatures jsonb not null,"
    " clear_number integer, run_type text",
    # path: the page's URL below the Data Docs root, unique (it holds GX's run time, to the microsecond).
    # result is GX's JSON as text: GX may write NaN, which jsonb refuses. PostgreSQL compresses both (TOAST).
    "data_docs": "path text primary key, validation_id text not null, run_id text not null, suite text not null,"
    " run_time text not null, stored_at timestamptz not null, page text not null, result text",
    "digests_sent": "run_id text not null, part text not null, published_at timestamptz not null,"
    " sent_at timestamptz not null, detail jsonb not null",
}
# Columns added to a table after its first release: added to a warehouse that has the table without them.
_ADDED_COLUMNS = {
    ("task_failures", "clear_number"): "integer",
    ("build_models", "validated_built_at"): "timestamptz",
    ("alerts_sent", "clear_number"): "integer",
    ("alerts_sent", "run_type"): "text",
}
# What the Data quality view looks Data Docs pages up by: the newest validations, a run's page of a suite.
_INDEXES = {
    "data_docs_by_time": "data_docs (stored_at desc)",
    "data_docs_by_run": "data_docs (run_id, suite)",
}


def json_array(expression: str) -> str:
    """SQL: the recorded JSON ``expression`` if it is an array, else an empty one: ``jsonb_array_elements`` fails on
    anything else, and a record written by hand or by another version would fail every reader of the table."""
    return f"case when jsonb_typeof({expression}) = 'array' then {expression} else '[]'::jsonb end"


def table(name: str) -> sql.Identifier:
    return sql.Identifier(SCHEMA, name)


def exists(conn, name: str) -> bool:
    return conn.execute("select to_regclass(%s)", (f"{SCHEMA}.{name}",)).fetchone()[0] is not None


def ensure(conn) -> None:
    """Create the audit tables once. Two runs creating them at the same moment would collide in
    PostgreSQL's catalog, so creation happens under the exclusive lock (checked first without it)."""
    if all(exists(conn, name) for name in TABLES) and _columns_added(conn):
        return
    with conn.transaction():
        locks.exclusive(conn)
        conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(SCHEMA)))
        for name, columns in TABLES.items():
            conn.execute(sql.SQL("create table if not exists {} ({})").format(table(name), sql.SQL(columns)))
        for (name, column), kind in _ADDED_COLUMNS.items():
            conn.execute(
                sql.SQL("alter table {} add column if not exists {} {}").format(
                    table(name), sql.Identifier(column), sql.SQL(kind)
                )
            )
        for name, columns in _INDEXES.items():
            conn.execute(
                sql.SQL("create index if not exists {} on {}.{}").format(
                    sql.Identifier(name), sql.Identifier(SCHEMA), sql.SQL(columns)
                )
            )


def _columns_added(conn) -> bool:
    found = conn.execute(
        "select count(*) from information_schema.columns where table_schema = %s"
        " and (table_name, column_name) in (select * from unnest(%s::text[], %s::text[]))",
        (SCHEMA, [t for t, _ in _ADDED_COLUMNS], [c for _, c in _ADDED_COLUMNS]),
    ).fetchone()[0]
    return found == len(_ADDED_COLUMNS)


def build_day(conn, run_id: str) -> str | None:
    """The day of a run's build (a callback whose context does not say which day its run is of)."""
    if not exists(conn, "builds"):
        return None
    row = conn.execute(
        sql.SQL("select logical_date from {} where run_id = %s limit 1").format(table("builds")), (run_id,)
    ).fetchone()
    return row[0].isoformat() if row else None


def record_validation(conn, summary: dict, published: bool) -> None:
    ensure(conn)
    with conn.transaction():
        conn.execute(
            sql.SQL(
                "insert into {} (run_id, logical_date, validated_at, published, summary) values (%s, %s, now(), %s, %s)"
            ).format(table("validation_runs")),
            (summary["run_id"], summary["logical_date"], published, Jsonb(errors_redacted(summary))),
        )


def errors_redacted(value):
    """``value`` (a summary, a check's result) with each check's error, wherever it is listed (GX's exception message,
    which may quote a connection), masked: as it is kept, and as the view shows a record kept before."""
    if isinstance(value, list):
        return [errors_redacted(v) for v in value]
    if not isinstance(value, dict):
        return value
    return {
        k: redact(v) if k in ("error", "detail_error") and isinstance(v, str) else errors_redacted(v)
        for k, v in value.items()
    }


def validation_recorded(conn, summary: dict) -> bool:
    """Whether ``summary`` (its run and validation id) is on record already, published or not."""
    if not exists(conn, "validation_runs"):
        return False
    query = "select from {} where run_id = %s and summary->>'validation_id' is not distinct from %s limit 1"
    keys = (summary["run_id"], summary.get("validation_id"))
    return conn.execute(sql.SQL(query).format(table("validation_runs")), keys).fetchone() is not None


def record_data_docs(conn, validation_id: str, run_id: str, pages: Sequence[DocsPage]) -> int:
    """Store one validation's Data Docs pages (checks/docs_pages.py); return how many.

    Call it inside the caller's transaction, with the validation's record when there is one: the pages and
    the record commit together or not at all.
    """
    rows = [(p.path, validation_id, run_id, p.suite, p.run_time, p.html, p.result) for p in pages]
    strangers = sorted({p.run_name for p in pages} - {run_id})
    if strangers:
        raise ValueError(f"Data Docs of run(s) {strangers} among the pages of run {run_id!r}: a used GX folder?")
    with conn.cursor() as cur:
        cur.executemany(
            sql.SQL(
                "insert into {} (path, validation_id, run_id, suite, run_time, stored_at, page, result)"
                " values (%s, %s, %s, %s, %s, now(), %s, %s)"
            ).format(table("data_docs")),
            rows,
        )
    return len(rows)


def record_publish(conn, run_id: str, day: dt.date, tables: list[str]) -> None:
    """Inside the publish transaction."""
    conn.execute(
        sql.SQL("insert into {} values (%s, %s, now(), %s)").format(table("publish_log")), (run_id, day, tables)
    )


def later_publish(conn, build_key: str) -> dict | None:
    """Of the runs that published after build ``build_key`` was first prepared, the one with the latest clock
    (run id, clock, publish time); None when there is none (or the build was never prepared). A run's clock moves
    to it when the run is prepared again (wap.prepare), and a publish refuses a build too far behind it
    (publish_checks.refuse_an_older_clock)."""
    if not exists(conn, "builds") or not exists(conn, "publish_log"):
        return None
    row = conn.execute(
        sql.SQL(
            "select later.run_id, later.run_time, l.published_at from {builds} as b"
            " join {builds} as later on later.key <> b.key"
            " join {log} as l on l.run_id = later.run_id and l.logical_date = later.logical_date"
            "  and l.published_at > b.created_at"
            " where b.key = %s order by later.run_time desc limit 1"
        ).format(builds=table("builds"), log=table("publish_log")),
        (build_key,),
    ).fetchone()
    return None if row is None else {"run_id": row[0], "run_time": row[1], "published_at": row[2]}


def newest_published_coverage(conn, skew: dt.timedelta) -> dt.datetime | None:
    """How far the published runs built every table: for each, its clock plus ``skew`` (the incremental tables
    hold rows up to it) but no later than the end of its day (its daily tables hold that day only: a run of an
    old day whose clock is later, a cleared or a manual one, did not build the days between); the latest of
    those. From the publish log, not the build's state (a build cleared after its publish is 'building' again)."""
    if not exists(conn, "builds") or not exists(conn, "publish_log"):
        return None
    return conn.execute(
        sql.SQL(
            "select max(least(b.run_time + %s, (l.logical_date + 1)::timestamp at time zone 'UTC'))"
            " from {} as b join {} as l on l.run_id = b.run_id and l.logical_date = b.logical_date"
        ).format(table("builds"), table("publish_log")),
        (skew,),
    ).fetchone()[0]


def last_published(conn) -> dict | None:
    """The most recent publish (run id, day, time), or None when nothing was ever published."""
    if not exists(conn, "publish_log"):
        return None
    row = conn.execute(
        sql.SQL("select run_id, logical_date, published_at from {} order by published_at desc limit 1").format(
            table("publish_log")
        )
    ).fetchone()
    return None if row is None else {"run_id": row[0], "logical_date": row[1].isoformat(), "published_at": row[2]}


def latest_published_day(conn) -> dt.date | None:
    """The latest day any run published, or None when nothing was ever published."""
    if not exists(conn, "publish_log"):
        return None
    return conn.execute(sql.SQL("select max(logical_date) from {}").format(table("publish_log"))).fetchone()[0]


def record_task_failure(
    conn, run_id: str, task_id: str, day: dt.date, error: str, clear_number: int | None = None
) -> None:
    ensure(conn)
    with conn.transaction():
        conn.execute(
            sql.SQL(
                "insert into {} (run_id, task_id, logical_date, failed_at, error, clear_number)"
                " values (%s, %s, %s, now(), %s, %s)"
            ).format(table("task_failures")),
            (run_id, task_id, day, redact(error), clear_number),  # kept, and read by everyone the DAG's runs are
        )


def readable(conn, name: str) -> bool:
    """Whether table ``name`` exists, with the columns added since its first release (an older warehouse's gets
    them here: the readers below select them)."""
    if not exists(conn, name):
        return False
    ensure(conn)
    return True


def task_failures(conn, run_id: str) -> list[dict]:
    """The failures of a run's tasks, oldest first."""
    if not readable(conn, "task_failures"):
        return []
    rows = conn.execute(
        sql.SQL(
            "select task_id, failed_at, error, clear_number, logical_date from {} where run_id = %s order by failed_at"
        ).format(table("task_failures")),
        (run_id,),
    ).fetchall()
    return [
        {"task_id": t, "failed_at": at, "error": e, "clear_number": n, "logical_date": day} for t, at, e, n, day in rows
    ]


def last_publish_of(conn, relation: str) -> dt.date | None:
    """The day of the latest run that published ``relation``."""
    if not exists(conn, "publish_log"):
        return None
    return conn.execute(
        sql.SQL("select max(logical_date) from {} where %s = any(tables)").format(table("publish_log")), (relation,)
    ).fetchone()[0]


def not_published_status(conn) -> dict:
    """What readers see when a run did not publish: the marts of the last run that did."""
    last = last_published(conn)
    return {"published": False, "serving_run": last["logical_date"] if last else None, "tables": []}


def utc_minute(moment: dt.datetime) -> str:
    """A time of these tables as messages show it: in UTC, whatever the session's zone, to the minute."""
    return f"{moment.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"


def build_state(conn, key: str) -> str | None:
    """The state wap gave build ``key`` (building, rebuilding, published, dropped), or None where none is recorded."""
    if not exists(conn, "builds"):
        return None
    row = conn.execute(sql.SQL("select state from {} where key = %s").format(table("builds")), (key,)).fetchone()
    return row[0] if row else None


def run_published_at(conn, run_id: str) -> dt.datetime | None:
    """When the run last published, or None when it never did."""
    if not exists(conn, "publish_log"):
        return None
    return conn.execute(
        sql.SQL("select max(published_at) from {} where run_id = %s").format(table("publish_log")), (run_id,)
    ).fetchone()[0]


def validation_published_at(conn, run_id: str, validation_id: str | None) -> dt.datetime | None:
    """When the validation ``validation_id`` of run ``run_id`` was published, or None when that attempt published
    nothing (its record, published, commits with the publish: tasks/publish.py; both are stamped with the publish
    transaction's now()). Without a validation id (a summary from before ids), the run's last publish."""
    if validation_id is None:
        return run_published_at(conn, run_id)
    if not exists(conn, "validation_runs") or not exists(conn, "publish_log"):
        return None
    return conn.execute(
        sql.SQL(
            "select max(p.published_at) from {} p join {} v on v.run_id = p.run_id and v.validated_at = p.published_at"
            " where p.run_id = %s and v.published and v.summary->>'validation_id' = %s"
        ).format(table("publish_log"), table("validation_runs")),
        (run_id, validation_id),
    ).fetchone()[0]


def record_digest(conn, run_id: str, part: str, published_at: dt.datetime, detail: dict) -> None:
    """One part of the digest about the run's publish at ``published_at`` went out (see tasks.digest)."""
    ensure(conn)
    with conn.transaction():
        conn.execute(
            sql.SQL("insert into {} values (%s, %s, %s, now(), %s)").format(table("digests_sent")),
            (run_id, part, published_at, Jsonb(detail)),
        )


def digests_sent(conn, run_id: str, published_at: dt.datetime) -> dict[str, dict]:
    """The parts of the digest about the run's publish at ``published_at`` that went out, with what their
    sending returned."""
    if not exists(conn, "digests_sent"):
        return {}
    rows = conn.execute(
        sql.SQL("select part, detail from {} where run_id = %s and published_at = %s order by sent_at").format(
            table("digests_sent")
        ),
        (run_id, published_at),
    ).fetchall()
    return dict(rows)
