"""Root causes: fold the failures that are one problem propagated through ``ref()``s into one entry.

A duplicated order fails ``expect_column_values_to_be_unique(order_id)`` in ``stg_postgres__orders``,
then again in ``int_orders`` and ``fact_orders``, which inherit the column. On-call should read one
entry: the most upstream failure, named by its published table and its raw source, with the
downstream repeats folded in ("also fails in ...") and each distinct sample key once, with how many
times it was seen.

Two failures are the same problem when the later model reads the earlier one (transitively) and either
they have the same expectation type on the same column and their sample keys overlap (or one of them has
none), or the later one is a query check whose rows name a sample key of the earlier one's column (the
duplicated order again in its snapshot: ``order_id=<that order>, valid_from=..., copies=2``). Works on the
plain dicts of the validation summary, so the alert, the log and the Data quality view share it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from greenery import config, links
from greenery.checks.summary import row_has, row_names
from greenery.project.models import Model, ancestors

_SEVERITY_RANK = {"critical": 0, "warning": 1}


def raw_sources(models: Mapping[str, Model], name: str, ancestry: Mapping[str, set[str]]) -> list[str]:
    """The raw tables a model reads, itself or through its refs (``raw.orders``...)."""
    raw = config.get().raw_schema
    direct = set(models[name].sources)
    if not direct:
        for ref in ancestry[name]:
            direct |= set(models[ref].sources)
    return [f"{raw}.{table}" for table in sorted(direct)]


def distinct_keys(keys: Iterable[Any]) -> list[dict[str, Any]]:
    """Each sample key once, with the number of times it was seen (a duplicated key shows up per row)."""
    counts = Counter(str(k) for k in keys)
    return [{"key": key, "count": n} for key, n in counts.items()]


def _signature(failure: Mapping[str, Any]) -> tuple:
    # A check without a column (a query, a pair of columns, the contract) is told apart by its description too: two
    # different query checks failing are two problems (review: an errored check swallowed a reconciliation's rows).
    column = failure.get("column")
    return (failure.get("expectation"), column, None if column else failure.get("description"))


def _overlap(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    keys_a, keys_b = set(map(str, a.get("sample_keys") or [])), set(map(str, b.get("sample_keys") or []))
    return not keys_a or not keys_b or bool(keys_a & keys_b)


def _split(root: Mapping[str, Any], later: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """``later``, the same check as ``root`` downstream of it, as (the part that is ``root``'s problem, the part that
    is not): its sample keys that ``root``'s sample, holding all of its failing rows, names, and those it does not
    (None: there are none of these, or ``root``'s sample is a part of its rows and may hold them). Review: a key only
    a mart's join repeated, beside the raw duplicate both found, was folded in: named nowhere, told "fix the source
    rows", held back in a backfill as the duplicate's repeat. Its keys alone: with the shared ones its signature
    changed with whether the mart's window held the duplicate, and a backfill paged it again on such days (diff
    review)."""
    found = {str(k) for k in root.get("sample_keys") or []}
    if not found or len(root.get("sample_keys") or []) < (root.get("unexpected_count") or 0):
        return None
    keys = later.get("sample_keys") or []
    shared, own = [k for k in keys if str(k) in found], [k for k in keys if str(k) not in found]
    if not own:
        return None
    own_count = max((later.get("unexpected_count") or 0) - len(shared), len(own))
    return (
        {**later, "sample_keys": shared, "unexpected_count": len(shared)},
        {**later, "sample_keys": own, "unexpected_count": own_count},
    )


def _names_a_key_of(root: Mapping[str, Any], failure: Mapping[str, Any]) -> bool:
    """Whether ``failure``, a query check (no column), reports rows that name one of the sample keys of
    ``root``'s one-column check, as ``column=value`` (how the summary writes a query's row)."""
    column = root.get("column")
    if failure.get("column") or not column or "," in column:
        return False
    rows = [str(k) for k in failure.get("sample_keys") or []]
    return any(row_names(row, column, value) for value in root.get("sample_keys") or [] for row in rows)


def _same_problem(root: Mapping[str, Any], failure: Mapping[str, Any]) -> bool:
    if bool(root.get("error")) != bool(failure.get("error")):
        # A check that could not run says nothing of the rows another one found, nor they of it (review: either hid
        # the other, and the alert's next step was the wrong one: "fix the model or suite" for bad rows, or the
        # reverse).
        return False
    same_check = _signature(root) == _signature(failure) and _overlap(root, failure)
    return same_check or _names_a_key_of(root, failure)


def group(failures: Iterable[Mapping[str, Any]], models: Mapping[str, Model]) -> list[dict[str, Any]]:
    """Root-cause entries, most severe first and upstream before downstream."""
    ancestry = ancestors(models)
    order = {name: i for i, name in enumerate(models)}
    ranked = sorted(
        failures, key=lambda f: (order.get(f.get("suite"), len(order)), _SEVERITY_RANK.get(f.get("severity"), 2))
    )
    roots: list[dict[str, Any]] = []
    for failure in ranked:
        suite = failure.get("suite")
        home = next(
            (
                root
                for root in roots
                if root["model"] in ancestry.get(suite, set()) and _same_problem(root["failure"], failure)
            ),
            None,
        )
        same_check = home is not None and _signature(home["failure"]) == _signature(failure)
        if same_check and (parts := _split(home["failure"], failure)) is not None:  # the shared keys fold, not these
            home["members"].append(parts[0])
            roots.append({"model": suite, "failure": parts[1], "members": []})
            continue
        if home is not None:
            home["members"].append(failure)
            continue
        roots.append({"model": suite, "failure": failure, "members": []})
    entries = [_entry(root, models, ancestry) for root in roots]
    entries.sort(key=lambda e: (_SEVERITY_RANK.get(e["severity"], 2), order.get(e["model"], len(order))))
    for entry in entries:
        # Review: one duplicated user also failed a reconciliation check of a mart, an entry of its own that named
        # the mart's other raw sources and owner, under "fix the source rows named above". Checks of other kinds
        # are not folded (an independent problem downstream must stay visible); the entry says what it reads.
        entry["downstream_of"] = [
            e["table"]
            for e in entries
            if e is not entry
            and e["severity"] == "critical"
            and e["model"] in ancestry.get(entry["model"], set())
            and not _other_rows(entry, e)
        ]
    return entries


def _other_rows(entry: Mapping[str, Any], upstream: Mapping[str, Any]) -> bool:
    """Whether ``entry``'s failing rows, all of them in its sample, are keyed by ``upstream``'s one column and none by
    a value it found: then it does not follow from it (user trial: an order's lines quarantined for their product's
    price were "reads staging.stg_postgres__orders, failing above", a duplicated order of another id)."""
    column, found = upstream.get("column"), [str(k["key"]) for k in upstream.get("keys") or []]
    rows = [str(k["key"]) for k in entry.get("keys") or []]
    if not column or "," in column or not found or not rows:
        return False
    if sum(int(k.get("count") or 1) for k in entry["keys"]) < (entry.get("unexpected_count") or 0):
        return False  # a sample of its rows: the others may be the upstream's
    if entry.get("column") == column:  # its keys are values of the same column
        return not set(rows) & set(found)
    keyed = all(row_has(row, column) for row in rows)
    return keyed and not any(row_names(row, column, value) for row in rows for value in found)


def _entry(root: Mapping[str, Any], models: Mapping[str, Model], ancestry) -> dict[str, Any]:
    failure, members, name = root["failure"], root["members"], root["model"]
    model = models.get(name)
    severities = [failure.get("severity")] + [m.get("severity") for m in members]
    severity = min(severities, key=lambda s: _SEVERITY_RANK.get(s, 2)) or "critical"
    return {
        "model": name,
        "table": model.relation if model else failure.get("table"),
        "sources": raw_sources(models, name, ancestry) if model else [],
        "column": failure.get("column"),
        "expectation": failure.get("expectation"),
        "severity": severity,
        "description": failure.get("description"),
        "observed_value": failure.get("observed_value"),
        "unexpected_count": failure.get("unexpected_count"),
        "keys": distinct_keys(failure.get("sample_keys") or []),
        "error": failure.get("error"),
        "detail_error": failure.get("detail_error"),  # why it names no rows, when they could not be read
        # What each table downstream found, for the repeat's signature (review: a new key failing downstream only,
        # folded into yesterday's upstream entry, was held back as its repeat): alerts/suppression.py.
        "also_found": sorted(
            (
                {"table": _relation(m, models), "unexpected_count": m.get("unexpected_count"), "keys": _keys(m)}
                for m in members
            ),
            key=lambda found: (found["table"], str(found["unexpected_count"])),
        ),
        # A table once, however many of its checks repeat the problem.
        "also_fails_in": list(dict.fromkeys(_relation(m, models) for m in members)),
    }


def _keys(failure: Mapping[str, Any]) -> list[dict[str, Any]]:
    return distinct_keys(sorted(map(str, failure.get("sample_keys") or [])))


def _relation(failure: Mapping[str, Any], models: Mapping[str, Model]) -> str:
    """The published table a failure is of (its own names the run's build schema)."""
    suite = failure.get("suite")
    return models[suite].relation if suite in models else str(failure.get("table"))


# Checks of a table's shape, not its rows: no source row is at fault when they fail.
CONTRACTS = (
    "expect_table_columns_to_match_set",
    "expect_table_columns_to_match_ordered_list",
    "expect_column_to_exist",
)


def severity(failure: Mapping[str, Any]) -> str:
    """A failure's or cause's severity as the alert and the red task read it: critical when unsaid."""
    return str(failure.get("severity") or "critical").lower()


def what_to_fix(causes: Iterable[Mapping[str, Any]]) -> str:
    """The first step after critical checks failed, worded once for the alert and the red task: the source rows, or,
    for a check whose own query failed (it names no rows: ``error``), its model or suite (review: such a check was
    paged as bad data, "Fix the source rows")."""
    critical = [c for c in causes if severity(c) == "critical"]
    unevaluated = sum(1 for c in critical if c.get("error"))
    if critical and unevaluated == len(critical):
        return "The checks above could not be evaluated (their query failed): fix their model or suite, not the data"
    if critical and all(c.get("error") or c.get("expectation") in CONTRACTS for c in critical):
        # Review: a model's columns differing from its suite's column set was told "Fix the source rows".
        return "The tables' columns differ from their suites' column sets (the contract): fix the model or the suite"
    fix = "Fix the source rows named above"
    found = [c for c in critical if not c.get("error")]
    if found and all(_made_by_its_model(c) for c in found):
        # Developer's trial: a model's join repeated a key, its staging passed every check, and the page said to fix
        # the source rows, which were right.
        fix = "Fix the model of each table named above (its key repeats where the tables it reads pass their checks:"
        fix += " a join that repeats rows?), or the source rows it reads"
    if any(str(c.get("description") or "").startswith(LOST_DAY) for c in critical):  # re-trial: it looped
        # UI trial: "the day" read as the lost day too, and "then clear the whole run" after it failed again.
        fix = (
            "Restore the raw rows named above (deleted on purpose? instead of the clear below, "
            + links.TRIGGER_FULL_REFRESH.replace("the day", "this run's day", 1)
            + ", or `greenery run --date <this run's day> --full-refresh`: a clear runs it again without it)"
        )
    return fix + (" and the model or suite of each check that could not be evaluated" if unevaluated else "")


# Layers whose tables a model makes from others: a key repeated there with nothing failing upstream is likely the
# model's own doing (a staging key repeated comes from raw).
BUILT_LAYERS = ("intermediate", "marts")


def _made_by_its_model(cause: Mapping[str, Any]) -> bool:
    """A primary-key check of an intermediate or mart table, with no failing table upstream of it."""
    described = str(cause.get("description") or "")
    key = cause.get("expectation") == "expect_column_values_to_be_unique" or "primary key" in described
    key = key or described.startswith("one row per")
    return key and str(cause.get("table")).split(".")[0] in BUILT_LAYERS and not cause.get("downstream_of")


# The critical lost-history check's description starts so (include/expectations/int_source_volumes_daily.json).
LOST_DAY = "lost history, most of a day"
