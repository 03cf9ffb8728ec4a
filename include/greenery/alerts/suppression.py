"""Suppression of repeats: an alert that only repeats unchanged warnings is not sent again too soon.

A warning's signature is its table, check, column and description with what it found (the unexpected count
or the observed value, and the failing rows' keys when the sample holds them all): the description tells
apart a table's query checks, which have no column, so a new one failing is news even when another failed
with the same count, and other rows failing the same check are news too. Quarantined rows sign as their model
and count. A run with a critical failure always alerts (but for a backfill's repeat of one: tasks/notify.py). An
alert is held back only when every one of its signatures was sent within the window (GREENERY_ALERT_SUPPRESS_HOURS)
*and* was found by the run before this one: a problem that went away and came back (a run passed in between) is
news again. The Data quality view and the daily summary still list them.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from greenery.alerts.text import as_int


def window(hours: dt.timedelta) -> dt.timedelta:
    """How far back a sent alert holds a repeat back: the setting, plus a 24th of it for the runs' own jitter.

    Review: with daily runs and the 24 h default, yesterday's alert was 23 h 58 min or 24 h 2 min old depending on
    which run took longer, so an unchanged warning went out again on about every other day at random.
    """
    return hours + hours / 24


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
                _all_keys(c),
            ],
            default=str,
            sort_keys=True,
        )
        for c in summary.get("root_causes") or []
    ]
    found += [json.dumps(["quarantine", model, n]) for model, n in sorted((summary.get("quarantined") or {}).items())]
    return found


def _all_keys(cause: Mapping[str, Any]) -> list[str] | None:
    """The failing rows' keys when the sample holds them all; a partial sample is whichever rows the database
    returned first, which can change from run to run with nothing else changed. A key counts its rows (a duplicated
    key is two failing rows: review, another key duplicated today was held back as the same warning)."""
    found = cause.get("keys") or []
    keys = sorted(str(k.get("key")) for k in found)
    rows = sum(as_int(k.get("count")) or 1 for k in found)
    return keys if keys and rows >= (cause.get("unexpected_count") or 0) else None


def held_back(summary: Mapping[str, Any], recent: set[str], previous: Mapping[str, Any] | None) -> bool:
    """Whether the alert only repeats what was sent within the window and what the previous run (its recorded
    summary, None when there is none) found as well."""
    if summary.get("blocking") or previous is None:
        return False
    mine = set(signatures(summary))
    return bool(mine) and mine <= recent and mine <= set(signatures(previous))
