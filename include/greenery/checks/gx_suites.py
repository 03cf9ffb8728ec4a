"""Suite files as Great Expectations reads them: GX's suite of a file, every problem of every file named before a
run builds anything, and ``greenery format-suites``' formatting. With checks/gx.py, the only modules that import GX.

GX reads a suite leniently: an expectation of an unknown type is dropped with a log line, a misspelt key fails the
whole suite with a message naming neither file nor expectation. Here each is refused naming the file, the
expectation (its index and type) and GX's reason (user trial: ``validate: TypeError: ... unexpected keyword argument
'kwarg'``, after every model was built, one file's typo per run and page).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import great_expectations as gx

from greenery.checks import gx_logs, strict_json
from greenery.checks.suites import SuiteDefinitionError, SuiteFile, check_ids, dump

log = logging.getLogger(__name__)


def read(path: Path, data: Mapping[str, Any]):
    """GX's suite of ``data`` (the file at ``path``, its refs rendered or not); else SuiteDefinitionError naming each
    expectation GX cannot read and why."""
    said: list[str] = []
    try:
        with gx_logs.errors_to(said):
            suite = gx.ExpectationSuite(**data)
    except Exception as exc:  # GX raises many types here (pydantic's, TypeError, ValueError...)
        why = _unreadable(data) or [f"GX cannot read it: {type(exc).__name__}: {gx_logs.one_line(exc)}"]
        raise SuiteDefinitionError(f"{path}: " + "; ".join(why)) from exc
    if len(suite.expectations) != len(data["expectations"]):  # dropped, with a log line only
        why = _unreadable(data) or [f"GX dropped an expectation: {said[-1] if said else 'no reason given'}"]
        raise SuiteDefinitionError(f"{path}: " + "; ".join(why))
    for line in said:  # read whole, but GX said something: the task's log keeps it
        log.warning("%s: %s", path, line)
    return suite


def _unreadable(data: Mapping[str, Any]) -> list[str]:
    """Each expectation GX cannot read, on its own: ``GX cannot read expectation 3 (expect_...): <GX's reason>``."""
    found = []
    for i, expectation in enumerate(data.get("expectations") or []):
        said: list[str] = []
        try:
            with gx_logs.errors_to(said):
                kept = gx.ExpectationSuite(name=str(data.get("name")), expectations=[expectation]).expectations
        except Exception as exc:  # as above
            said.append(f"{type(exc).__name__}: {gx_logs.one_line(exc)}")
            kept = []
        if not kept:
            why = said[-1] if said else "dropped"
            found.append(f"GX cannot read expectation {i} ({expectation.get('type')}): {why}")
    return found


def check_readable(suites: Mapping[str, SuiteFile]) -> None:
    """Every suite through GX before the run builds anything; every file's problems at once, a line each."""
    problems = []
    for suite_file in suites.values():
        try:
            read(suite_file.path, suite_file.data)
        except SuiteDefinitionError as exc:
            problems.extend(map(str, exc.args))
    if problems:
        raise SuiteDefinitionError(*problems)


def formatted_suite(path: Path) -> tuple[str, str]:
    """(its text, GX's serialized form with new ids where missing); else SuiteDefinitionError. Writes nothing."""
    data = strict_json.loads(text := path.read_text())  # a key given twice: refused (checks/strict_json.py)
    expectations = data.get("expectations") if isinstance(data, dict) else None
    if not isinstance(expectations, list) or not all(isinstance(e, dict) for e in expectations):
        raise SuiteDefinitionError(f"{path}: not a suite (a JSON object with a name and a list of expectations)")
    for item in (data, *expectations):
        item["id"] = item.get("id") or str(uuid.uuid4())
    # Review: a copied expectation that kept its neighbour's id, with a typo in its type, was dropped by GX (below)
    # unseen, since its id was still there: the file lost it, exit 0. Ids are one per expectation before GX reads them.
    try:
        check_ids(path, data)
    except SuiteDefinitionError as exc:
        raise SuiteDefinitionError(f"{exc} (delete the copy's id: formatting gives it a new one)") from None
    # GX drops an expectation it cannot parse with only a log line; formatting would delete it from the file: read()
    # refuses instead, naming it.
    suite = read(path, data)
    return text, dump(suite.to_json_dict())
