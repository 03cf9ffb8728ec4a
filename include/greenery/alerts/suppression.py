"""Suppression of repeats: an alert that only repeats unchanged warnings is not sent again too soon.

A warning's signature is its table, check, column and description with what it found (the unexpected count
or the observed value, and the failing rows' keys when the sample holds them all): the description tells
apart a table's query checks, which have no column, so a new one failing is news even when another failed
with the same count, and other rows failing the same check are news too. Quarantined rows sign as their model,
count and count per rule. A run with a critical failure always alerts (but for a backfill's repeat of one, compared
on its critical failures alone: tasks/notify.py). An
alert is held back only when every one of its signatures was sent within the window (GREENERY_ALERT_SUPPRESS_HOURS)
*and* was found by the run before this one (the day before's, or the run validated last: tasks/notify.py): a problem
that went away and came back (a run passed in between) is news again. The Data quality view and the daily summary
still list them.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from typing import Any

from greenery.alerts.text import as_int
from greenery.checks import root_causes


def window(hours: dt.timedelta) -> dt.timedelta:
    """How far back a sent alert holds a repeat back: the setting, plus a 24th of it for the runs' own jitter.

    Review: with daily runs and the 24 h default, yesterday's alert was 23 h 58 min or 24 h 2 min old depending on
    which run took longer, so an unchanged warning went out again on about every other day at random.
    """
    return hours + hours / 24


def signatures(summary: Mapping[str, Any]) -> list[str]:
    found = [_signature(c) for c in summary.get("root_causes") or []]
    # A model's rows held back by another rule, as many as before, are news (review: a status renamed upstream
    # quarantined 3 rows the day the 3 bad emails were fixed, and was held back as a repeat).
    rules = summary.get("quarantined_rules") if isinstance(summary.get("quarantined_rules"), Mapping) else {}
    found += [
        json.dumps(["quarantine", model, n, rules.get(model)], sort_keys=True)
        for model, n in sorted((summary.get("quarantined") or {}).items())
    ]
    return found


def recorded(summary: Mapping[str, Any]) -> list[str]:
    """What an alert is recorded with (alerts_sent): its signatures, and its critical root causes' as a backfill's
    other days compare them (:func:`critical_signatures`, without the downstream findings)."""
    return list(dict.fromkeys(signatures(summary) + critical_signatures(summary)))


def critical_signatures(summary: Mapping[str, Any]) -> list[str]:
    """The failed critical checks' signatures alone: what a backfill's day repeats of another's page (review: a day
    whose warnings or quarantine counts differed was paged again for the same critical root cause)."""
    return [
        _signature(c, downstream=False)
        for c in summary.get("root_causes") or []
        if root_causes.severity(c) == "critical"
    ]


def _signature(cause: Mapping[str, Any], downstream: bool = True) -> str:
    """``downstream``: with what each table downstream found of it (a warning's repeat: a new key there is news); a
    backfill's critical root cause is one page across its days, whose downstream counts differ by day (CI: the
    README's backfill paged each day)."""
    return json.dumps(
        [
            cause.get("table"),
            cause.get("expectation"),
            cause.get("column"),
            cause.get("description"),
            cause.get("unexpected_count"),
            cause.get("observed_value"),
            _all_keys(cause),
            *([_downstream(cause["also_found"])] if downstream and cause.get("also_found") else []),  # none: as before
        ],
        default=str,
        sort_keys=True,
    )


# What a key says of the run that found it, not of the rows: the raw-changed warning's command ends on the run's own
# day (re-trial: the same warning was news to every run of another day, and would page every day).
_RUN_OWN = re.compile(r"(--end-date )\d{4}-\d{2}-\d{2}")


def _downstream(found: list[Mapping[str, Any]]) -> list[list]:
    """What each table downstream found of the root cause (root_causes: also_found): its count and, as for the
    root's own, its keys when its sample holds them all (diff review: a sample of 5 of more rows changed from run to
    run, and so did the signature: the warning was news every day)."""
    return [[f.get("table"), f.get("unexpected_count"), _all_keys(f)] for f in found if isinstance(f, Mapping)]


def _all_keys(cause: Mapping[str, Any]) -> list[str] | None:
    """The failing rows' keys when the sample holds them all; a partial sample is whichever rows the database
    returned first, which can change from run to run with nothing else changed. A key counts its rows (a duplicated
    key is two failing rows: review, another key duplicated today was held back as the same warning)."""
    found = cause.get("keys") or []
    keys = sorted(_RUN_OWN.sub(r"\1…", str(k.get("key"))) for k in found)
    rows = sum(as_int(k.get("count")) or 1 for k in found)
    return keys if keys and rows >= (cause.get("unexpected_count") or 0) else None


def held_back(summary: Mapping[str, Any], recent: set[str], previous: Mapping[str, Any] | None) -> bool:
    """Whether the alert only repeats what was sent within the window and what the previous run (its recorded
    summary, None when there is none) found as well."""
    if summary.get("blocking") or previous is None:
        return False
    # A check that could not run checked nothing: each day it does not is news (review: one that always timed out,
    # a transient error that stays a warning, was held back as an unchanged repeat, its table unchecked for good).
    if any(cause.get("error") for cause in summary.get("root_causes") or []):
        return False
    mine = set(signatures(summary))
    return bool(mine) and mine <= recent and mine <= set(signatures(previous))
