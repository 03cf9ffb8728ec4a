"""The validation summary: a compact JSON-able dict of what failed, for XCom, Slack and the Data quality view."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from greenery.project.models import Model

SAMPLE_KEYS = 5


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _sample_keys(result: Mapping[str, Any]) -> list[str]:
    rows = result.get("partial_unexpected_index_list") or []
    if not rows:
        details = result.get("details") or {}
        rows = details.get("unexpected_rows") or []
    keys = []
    for row in rows[:SAMPLE_KEYS]:
        if isinstance(row, Mapping):
            values = list(row.values())
            keys.append(str(values[0]) if len(values) == 1 else ", ".join(f"{k}={v}" for k, v in row.items()))
        else:
            keys.append(str(row))
    if not keys:
        keys = [str(v) for v in (result.get("partial_unexpected_list") or [])[:SAMPLE_KEYS]]
    return keys


def _error(result) -> str | None:
    info = result.exception_info or {}
    # One expectation may carry several metric errors keyed by metric id; any raised one counts.
    # Sorted: GX fills that dict in an order that changes from one process to the next (set iteration).
    entries = [info] if "raised_exception" in info else [v for _, v in sorted(info.items()) if isinstance(v, Mapping)]
    for entry in entries:
        if entry.get("raised_exception"):
            message = str(entry.get("exception_message") or "error").strip()
            return message.split("\n[SQL:")[0][:500]
    return None


def summarize(results: Mapping[str, Any], models: Mapping[str, Model], relation, fetch_samples=None) -> dict[str, Any]:
    suites, failures = [], []
    for name, validation in results.items():
        counts = {"critical": 0, "warning": 0}
        for res in validation.results:
            config = res.expectation_config
            error = _error(res)
            if res.success and not error:
                continue
            severity = str(getattr(config.severity, "value", config.severity) or "critical").lower()
            counts["critical" if severity == "critical" else "warning"] += 1
            kwargs = config.kwargs
            columns = kwargs.get("column_list") or [kwargs[k] for k in ("column_A", "column_B") if kwargs.get(k)]
            column = kwargs.get("column") or (", ".join(columns) if columns else None)
            failures.append(
                {
                    "suite": name,
                    "table": relation(name),
                    "column": column,
                    "expectation": config.type,
                    "severity": severity,
                    "description": config.description or (config.meta or {}).get("description"),
                    "observed_value": _jsonable(res.result.get("observed_value")),
                    "unexpected_count": res.result.get(
                        "unexpected_count",
                        res.result.get("observed_value") if config.type == "unexpected_rows_expectation" else None,
                    ),
                    "sample_keys": (
                        fetch_samples(name, kwargs["unexpected_rows_query"])
                        if fetch_samples and config.type == "unexpected_rows_expectation" and not error
                        else _sample_keys(res.result)
                    ),
                    "error": error,
                }
            )
        suites.append(
            {
                "suite": name,
                "table": relation(name),
                "evaluated": len(validation.results),
                "failed_critical": counts["critical"],
                "failed_warning": counts["warning"],
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
    }
