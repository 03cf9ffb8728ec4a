"""The validation summary: a compact JSON-able dict of what failed, for XCom, Slack and the Data quality view.

It reads plain data: each expectation's result as GX serializes it (``ExpectationValidationResult
.to_json_dict()``: ``success``, ``expectation_config``, ``result``, ``exception_info``), which checks/gx.py
hands over. No GX import here.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

SAMPLE_KEYS = 5
# How much of a sample key Slack and the Data quality view show: a duplicated compound key of three UUID columns
# with its count (``event_id=…, product_id=…, session_id=…, copies=2``, 153 characters) is shown whole.
SAMPLE_KEY_CHARS = 160
UNEXPECTED_ROWS = "unexpected_rows_expectation"
# Set by checks/gx.py on a failed result whose rows (sample keys) pass 2 could not read: the reason.
DETAIL_ERROR = "greenery_detail_error"


def _finite(value: Any) -> Any:
    # A NaN or infinite observed value must not make the summary invalid JSON (XCom, Slack payloads).
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _jsonable(value: Any) -> Any:
    return _finite(json.loads(json.dumps(value, default=str)))


def _row_text(row: Any) -> str:
    if isinstance(row, Mapping):
        values = list(row.values())
        return str(values[0]) if len(values) == 1 else ", ".join(f"{k}={v}" for k, v in row.items())
    return str(row)


def row_has(sample_key: str, column: str) -> bool:
    """Whether a query's row, as ``_row_text`` wrote it (``a=1, b=2``), has ``column``, whatever its value."""
    return re.search(rf"(?:^|, ){re.escape(column)}=", sample_key) is not None


def row_names(sample_key: str, column: str, value: Any) -> bool:
    """Whether a query's row, as ``_row_text`` wrote it (``a=1, b=2``), has ``column`` equal to ``value``."""
    return re.search(rf"(?:^|, ){re.escape(column)}={re.escape(str(value))}(?:, |$)", sample_key) is not None


def sample_keys(result: Mapping[str, Any]) -> list[str]:
    """Up to SAMPLE_KEYS offending rows: their keys (map expectations) or the query's rows (unexpected_rows)."""
    rows = result.get("partial_unexpected_index_list") or (result.get("details") or {}).get("unexpected_rows") or []
    if not rows:
        rows = result.get("partial_unexpected_list") or []
    return [_row_text(row) for row in rows[:SAMPLE_KEYS]]


def error(result: Mapping[str, Any]) -> str | None:
    """The message of the exception GX caught while computing the expectation's metrics, if any."""
    info = result.get("exception_info") or {}
    # One expectation may carry several metric errors keyed by metric id; any raised one counts.
    # Sorted: GX fills that dict in an order that changes from one process to the next (set iteration).
    entries = [info] if "raised_exception" in info else [v for _, v in sorted(info.items()) if isinstance(v, Mapping)]
    for entry in entries:
        if entry.get("raised_exception"):
            message = str(entry.get("exception_message") or "error").strip()
            return message.split("\n[SQL:")[0][:500]
    return None


def failed(result: Mapping[str, Any]) -> bool:
    return not result.get("success") or error(result) is not None


def _failure(suite: str, table: str, res: Mapping[str, Any]) -> dict[str, Any]:
    config = res["expectation_config"]
    kwargs = config.get("kwargs") or {}
    columns = kwargs.get("column_list") or [kwargs[k] for k in ("column_A", "column_B") if kwargs.get(k)]
    outcome = res.get("result") or {}
    message = error(res)
    observed = outcome.get("observed_value")
    details = outcome.get("details")
    mismatched = details.get("mismatched") if isinstance(details, Mapping) else None
    if isinstance(mismatched, Mapping) and (mismatched.get("unexpected") or mismatched.get("missing")):
        # The column contract: which columns differ, not the table's whole list (review: on-call could not tell).
        observed = "; ".join(
            f"{what}: {', '.join(map(str, mismatched[key]))}"
            for key, what in (("unexpected", "columns the suite does not list"), ("missing", "listed but missing"))
            if mismatched.get(key)
        )
    return {
        "suite": suite,
        "table": table,
        "column": kwargs.get("column") or (", ".join(columns) if columns else None),
        "expectation": config["type"],
        "severity": str(config.get("severity") or "critical").lower(),
        "description": config.get("description") or (config.get("meta") or {}).get("description"),
        "observed_value": _jsonable(observed),
        "unexpected_count": outcome.get("unexpected_count", observed if config["type"] == UNEXPECTED_ROWS else None),
        "sample_keys": [] if message else sample_keys(outcome),
        "error": message,
        "detail_error": None if message else res.get(DETAIL_ERROR),
    }


UP = {"info": "warning", "warning": "critical"}
# What the database says when it could not answer this time (psycopg's class names, PostgreSQL's words), not of a
# check's own definition (a missing column, a syntax error, a grant).
TRANSIENT = re.compile(
    r"OperationalError|QueryCanceled|AdminShutdown|ConnectionFailure|OutOfMemory|DiskFull|InsufficientResources"
    r"|DeadlockDetected|SerializationFailure|LockNotAvailable|canceling statement|terminating connection"
    r"|server closed the connection|connection .*(closed|lost|refused)"
)


def summarize(
    results: Mapping[str, Sequence[Mapping[str, Any]]], relation, timing: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """``results``: every suite's expectation results in GX's JSON form; ``relation``: suite -> table checked;
    ``timing``: each suite's ``seconds`` and what the streams' queue was ordered on (``streams_balanced_on``), if
    known."""
    timing = timing or {}
    suites, failures, notes = [], [], []
    for name, outcomes in results.items():
        counts = {"critical": 0, "warning": 0}
        for res in outcomes:
            if not failed(res):
                continue
            failure = _failure(name, relation(name), res)
            if failure["severity"] == "info" and not failure["error"]:
                notes.append(failure)  # listed, never alerting (e.g. "too little history for anomalies")
                continue
            if failure["error"] and (failure["severity"] == "info" or not TRANSIENT.search(failure["error"])):
                # A check that could not run checked nothing: one severity up. Review: a note whose query failed was
                # counted as passed; a developer's trial: a warning's misspelt column published every day behind a 🟡,
                # the data it was to check never checked (a broken suite is fixed before its data goes out). Not for a
                # warning the database could not answer this time (review): it would block on the weather.
                failure["severity"] = UP.get(failure["severity"], failure["severity"])
            counts["critical" if failure["severity"] == "critical" else "warning"] += 1
            failures.append(failure)
        suites.append(
            {
                "suite": name,
                "table": relation(name),
                "evaluated": len(outcomes),
                "failed_critical": counts["critical"],
                "failed_warning": counts["warning"],
                "seconds": (timing.get("seconds") or {}).get(name),
            }
        )
    failures.sort(key=lambda f: (f["severity"] != "critical", f["table"], f["expectation"]))
    failed_critical = sum(s["failed_critical"] for s in suites)
    return {
        "evaluated": sum(s["evaluated"] for s in suites),
        "failed_critical": failed_critical,
        "failed_warning": sum(s["failed_warning"] for s in suites),
        "blocking": failed_critical > 0,
        "suites": suites,
        "failures": failures,
        "notes": notes,
        "streams_balanced_on": timing.get("streams_balanced_on"),
    }
