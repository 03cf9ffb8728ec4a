"""Suppression of repeats: an alert that only repeats unchanged warnings is not sent again too soon.

A warning's signature is its table, check, column and description with what it found (the unexpected count
or the observed value): the description tells apart a table's query checks, which have no column, so a new
one failing is news even when another failed with the same count. Quarantined rows sign as their model and
count. A run with a critical failure always alerts. When every signature of an alert was sent within the
window (GREENERY_ALERT_SUPPRESS_HOURS), the alert is held back; the Data quality view and the daily summary
still list the warnings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def signatures(summary: Mapping[str, Any]) -> list[str]:
    found = [
        json.dumps(
            [
                c.get("table"),
                c.get("expectation"),
                c.get("column"),
                c.get("description"),
                c.get("unexpected_count"),
                c.get("observed_value"),
            ],
            default=str,
            sort_keys=True,
        )
        for c in summary.get("root_causes") or []
    ]
    found += [json.dumps(["quarantine", model, n]) for model, n in sorted((summary.get("quarantined") or {}).items())]
    return found


def held_back(summary: Mapping[str, Any], recent: set[str]) -> bool:
    """Whether the alert only repeats what was sent within the window."""
    if summary.get("blocking"):
        return False
    mine = signatures(summary)
    return bool(mine) and set(mine) <= recent
