"""What the Data quality view reads of a recorded validation summary: each field it shows, of its type.

Summaries are kept in ``greenery_audit.validation_runs`` as each version of the DAG recorded them: an older one lacks
fields a newer one has (a root cause's ``owner``, its ``runs_failing``), and the page's template names every field it
shows (an undefined one fails the page: review, a 500 for a run recorded before owners existed). Nothing here reads
the warehouse.
"""

from __future__ import annotations

import re
from typing import Any

from greenery import audit, wap
from greenery.redaction import redact

_BUILD_TABLE = re.compile(rf"^{re.escape(wap.BUILD_PREFIX)}\d{{8}}_[0-9a-f]+__(?P<layer>[^.]+)\.(?P<name>.+)$")


def count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def display_table(table: str | None) -> str | None:
    """``_build_20240101_ab12cd34__marts.fact_orders`` (where a run validated it) -> ``marts.fact_orders``."""
    if not table:
        return table
    found = _BUILD_TABLE.match(table)
    return f"{found['layer']}.{found['name']}" if found else table


def failure(f: dict[str, Any]) -> dict[str, Any]:
    samples = f.get("sample_keys")
    return {
        "suite": f.get("suite"),
        "table": display_table(f.get("table")),
        "column": f.get("column"),
        "expectation": f.get("expectation"),
        "severity": f.get("severity") or "critical",
        "description": f.get("description"),
        "observed_value": f.get("observed_value"),
        "unexpected_count": f.get("unexpected_count"),
        "sample_keys": [str(s) for s in samples] if isinstance(samples, list) else [],
        "error": redacted(f.get("error")),
        "detail_error": redacted(f.get("detail_error")),
    }


def redacted(value: Any) -> Any:
    """An error as recorded, credentials masked (review: a password in a misspelt setting, echoed by every task's
    error, was on the page and in the JSON; a record kept before masking too)."""
    return redact(value) if isinstance(value, str) else value


def notes(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's *info* results (never alerting: e.g. too little history for the anomaly checks)."""
    found = summary.get("notes")
    return [failure(n) for n in found if isinstance(n, dict)] if isinstance(found, list) else []


def causes(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The root causes a run recorded (runs recorded before grouping existed have none), each with every field the
    page reads, of its type: a run recorded before a field existed (``owner``, ``runs_failing``) made the page a 500
    (review), as the page's template names each field and an undefined one fails it."""
    found = summary.get("root_causes")
    return [cause(audit.errors_redacted(c)) for c in found if isinstance(c, dict)] if isinstance(found, list) else []


def cause(c: dict[str, Any]) -> dict[str, Any]:
    """One recorded root cause as :func:`causes` gives it: what it recorded, and every field the page reads."""

    def texts(key: str) -> list[str]:
        return [str(v) for v in c[key]] if isinstance(c.get(key), list) else []

    keys = [k for k in c.get("keys") or [] if isinstance(k, dict)] if isinstance(c.get("keys"), list) else []
    return {
        **c,
        **failure(c),  # the fields a cause shares with a failure, each defaulted as a failure's is
        **{name: str(c[name]) if c.get(name) is not None else None for name in ("table", "owner")},  # table as recorded
        "sources": texts("sources"),
        "downstream_of": texts("downstream_of"),
        "also_fails_in": texts("also_fails_in"),
        "keys": [{"key": str(k.get("key", "")), "count": count(k.get("count")) or 1} for k in keys],
        "runs_failing": count(c.get("runs_failing")) or None,  # at least 1 when recorded (checks/history.py)
        "failing_since": str(c["failing_since"]) if c.get("failing_since") is not None else None,
    }
