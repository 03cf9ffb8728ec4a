"""Suites: one GX 1.x JSON file per model in include/expectations, checked before anything runs.

A file is GX's own serialized suite (``ExpectationSuite.to_json_dict()``): loading it with
``gx.ExpectationSuite(**data)`` and serializing it again gives the same file (tests/test_suites.py).
The suite and each expectation carry a fixed ``id``: GX keys results by it, so it must not change from
one run to the next. Each expectation carries GX's ``severity``: ``critical`` blocks the run, ``warning``
only alerts, ``info`` is only listed. ``unexpected_rows_query`` texts may name other models with
``{{ ref('model') }}``.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta, nodes

from greenery import config
from greenery.checks import strict_json
from greenery.errors import RetryCannotFix
from greenery.project.models import Model
from greenery.project.render import FAR_PAST, Interval, compiled, incremental_since, sql_literal
from greenery.project.render import valid_since as render_valid_since
from greenery.sources.schema import RAW_TABLES

# What a suite's text may name (resolve_refs, run_variables; gx.validate adds published): each call's kind of name
# and the names it takes.
CALLS = {
    "ref": lambda models: ("model", models),
    "published": lambda models: ("model", models),
    # The validate task passes the quarantine of the models that have one (review: any model passed, then KeyError).
    "quarantined": lambda models: (
        "model with a quarantine",
        [n for n, m in models.items() if m.config.get("quarantine")],
    ),
    "source": lambda models: ("raw table", RAW_TABLES),
}
# GX's own severities: critical blocks the publish, warning alerts, info is listed and never alerts.
SEVERITIES = ("critical", "warning", "info")
_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701 - SQL, not HTML


class SuiteDefinitionError(ValueError, RetryCannotFix):
    """A suite file is malformed, names an unknown model, or holds an expectation GX rejects; or a model has none.
    Not retried (user trial: a missing suite failed prepare_build after two retries, five minutes later). Its
    arguments are its problems, one per file, a line each when said."""

    def __str__(self) -> str:
        return "\n".join(map(str, self.args))


@dataclass(frozen=True)
class SuiteFile:
    model: str
    path: Path
    data: dict  # the file as GX serializes a suite: name, id, expectations, meta, notes

    @property
    def expectations(self) -> tuple[dict, ...]:
        return tuple(self.data["expectations"])


def load_suites(models: Mapping[str, Model], directory: Path | None = None) -> dict[str, SuiteFile]:
    """Read and check every suite file; each must be named after a model, with ids and severities."""
    directory = Path(directory or config.get().expectations_dir)
    suites: dict[str, SuiteFile] = {}
    problems = []
    for path in sorted(directory.glob("*.json")):
        try:
            suites[path.stem] = _load(path, models)
        except SuiteDefinitionError as exc:
            problems.extend(map(str, exc.args))
    if problems:  # every file's at once (user trial: three files' typos took three runs, and three pages)
        raise SuiteDefinitionError(*problems)
    return suites


def _load(path: Path, models: Mapping[str, Model]) -> SuiteFile:
    """One suite file, read and checked; else SuiteDefinitionError naming it."""
    try:
        data = strict_json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise SuiteDefinitionError(f"{path}: not UTF-8 at byte {exc.start}: {exc.reason}") from exc
    except strict_json.RepeatedKeyError as exc:
        raise SuiteDefinitionError(f"{path}:{exc.lineno}: {exc.msg}") from exc
    except json.JSONDecodeError as exc:
        raise SuiteDefinitionError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from exc
    _check_shape(path, data)
    name = data.get("name")
    if name != path.stem:
        raise SuiteDefinitionError(f"{path}: suite name {name!r} must equal the file name {path.stem!r}")
    if name not in models:  # developer's trial: it named the default folder, and no close name
        close = difflib.get_close_matches(name, list(models), n=1)
        hint = f"; did you mean {close[0]!r} (rename the file and its name)?" if close else ""
        raise SuiteDefinitionError(f"{path}: no model named {name!r} in {config.get().sql_dir}{hint}")
    expectations = data.get("expectations") or []
    if not expectations:
        raise SuiteDefinitionError(f"{path}: no expectations")
    check_ids(path, data)
    for i, exp in enumerate(expectations):
        _check_templates(path, f"expectation {i} ({exp.get('type')})", exp, models)
        if problem := _vacuous(exp):
            raise SuiteDefinitionError(f"{path}: expectation {i} ({exp.get('type')}): {problem}")
        if exp.get("severity") not in SEVERITIES:  # named from SEVERITIES (review: 'info' was accepted, unnamed)
            accepted = ", ".join(map(repr, SEVERITIES[:-1])) + f" or {SEVERITIES[-1]!r}"
            found = f"not {exp['severity']!r}" if "severity" in exp else "none given"
            raise SuiteDefinitionError(
                f"{path}: expectation {i} ({exp.get('type')}) needs severity {accepted}, {found}"
            )
    return SuiteFile(name, path, data)


def _check_templates(path: Path, where: str, value: Any, models: Mapping[str, Model]) -> None:
    """Every ``{{ }}`` of an expectation names models, raw tables and variables that exist (review: a typo'd ref()
    failed validate, after every model was built, with a bare KeyError naming nothing)."""
    for text in _texts(value):
        try:
            tree = _tree(text)
        except jinja2.TemplateSyntaxError as exc:
            raise SuiteDefinitionError(f"{path}: {where}: {exc.message} (line {exc.lineno} of its text)") from None
        _check_template(tree, models, f"{path}: {where}")


def _check_template(tree: nodes.Template, models: Mapping[str, Model], at: str) -> None:
    """One text's calls and variables; ``at`` names its file and expectation."""
    for call in tree.find_all(nodes.Call):
        if not isinstance(call.node, nodes.Name) or call.node.name not in CALLS:
            continue
        name, (kind, known) = call.node.name, CALLS[call.node.name](models)
        if len(call.args) != 1 or call.kwargs:
            raise SuiteDefinitionError(f"{at}: {name}() takes one name, as {name}('x')")
        [arg] = call.args
        if not isinstance(arg, nodes.Const) or not isinstance(arg.value, str):
            continue  # a name made by the template ({% for m in [...] %}): checked when it is rendered
        if arg.value not in known:
            close = difflib.get_close_matches(arg.value, list(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise SuiteDefinitionError(f"{at}: {name}({arg.value!r}) names no {kind}{hint}")
    variables = _variables()
    if unknown := sorted(meta.find_undeclared_variables(tree) - set(CALLS) - set(variables)):
        raise SuiteDefinitionError(
            f"{at}: no variable {', '.join(unknown)}; a suite's text may use {', '.join(variables)}"
            f" and {', '.join(f'{c}()' for c in CALLS)}"
        )


def _vacuous(exp: dict) -> str | None:
    """Why an expectation would check something else than it says, or nothing (review: only the repo's tests refused
    these: a deployment's own suites were taken as they were), or None."""
    kwargs = exp.get("kwargs") if isinstance(exp.get("kwargs"), dict) else {}
    numbers = [v for v in _values(kwargs) if isinstance(v, float)]
    if any(not math.isfinite(v) for v in numbers):  # strict_json reads NaN and Infinity
        return "a bound or number that is NaN or infinite checks nothing: give a finite one"
    mostly = kwargs.get("mostly")
    if mostly is not None and not (isinstance(mostly, int | float) and 0 < mostly <= 1):
        return f"mostly {mostly!r}: expected a fraction above 0 and at most 1 (0 lets every row fail)"
    query = kwargs.get("unexpected_rows_query")
    if isinstance(query, str):
        if "{batch}" not in query:  # GX only warns: the query then reads what it names, not this run's build
            return "its unexpected_rows_query does not read {batch}, the table it checks"
        schemas = (config.get().raw_schema, *config.LAYERS)
        if found := re.search(rf"\b({'|'.join(map(re.escape, schemas))})\.\w+", query):
            return f"its query names {found.group(0)} itself: the published table, not this run's; use ref()"
    if exp.get("type") == "expect_column_values_to_be_between":
        bounds = (kwargs.get("min_value"), kwargs.get("max_value"))
        if not all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds):
            return (
                "min_value and max_value, both numbers: PostgreSQL sorts NaN above every number, so one side lets it by"
            )
    return None


def _values(value: Any) -> Iterator[Any]:
    """Every value of a suite's JSON, at any depth."""
    if isinstance(value, dict | list):
        for v in value.values() if isinstance(value, dict) else value:
            yield from _values(v)
    else:
        yield value


def _texts(value: Any) -> Iterator[str]:
    """Every text of a suite's JSON rendered as Jinja, at any depth."""
    return (v for v in _values(value) if isinstance(v, str) and is_template(v))


@functools.cache
def _tree(text: str) -> nodes.Template:
    """A text's Jinja tree, parsed once: load_complete checks each, then validate reads which models it names."""
    return _ENV.parse(text)


@functools.cache
def _variables() -> tuple[str, ...]:
    """The variables a run renders a suite with besides CALLS: run_variables' names, the same for every day (it read
    every setting again for each of a run's ~150 templated texts)."""
    return tuple(sorted(set(run_variables({})) - set(CALLS)))


def load_complete(models: Mapping[str, Model], directory: Path | None = None) -> dict[str, SuiteFile]:
    """:func:`load_suites`, refused unless every model has one. The message names the folder and its setting (review:
    GREENERY_EXPECTATIONS_DIR pointing nowhere read as "no suite in include/expectations", the default folder)."""
    directory = Path(directory or config.get().expectations_dir)
    suites = load_suites(models, directory)
    missing = sorted(set(models) - set(suites))
    if missing:
        gone = ", no such folder" if not directory.is_dir() else ""
        raise SuiteDefinitionError(
            f"models without a suite in {directory} (GREENERY_EXPECTATIONS_DIR{gone}): {len(missing)} of {len(models)}"
            f" {missing}"
        )
    return suites


def _check_shape(path: Path, data: Any) -> None:
    """A suite is a JSON object whose expectations are a list of objects (review: ``[]`` or ``"expectations":
    "oops"`` failed validate with an AttributeError naming no file)."""
    if not isinstance(data, dict):
        raise SuiteDefinitionError(f"{path}: expected a JSON object (a suite), found a {type(data).__name__}")
    expectations = data.get("expectations")
    if expectations is not None and not isinstance(expectations, list):
        raise SuiteDefinitionError(f"{path}: 'expectations' must be a list, found a {type(expectations).__name__}")
    for i, exp in enumerate(expectations or []):
        if not isinstance(exp, dict):
            raise SuiteDefinitionError(f"{path}: expectation {i} must be a JSON object, found a {type(exp).__name__}")


def write_all(texts: Mapping[Path, str]) -> None:
    """Write every file of ``texts`` or none: each goes to a temporary file beside it first, and only when all of
    them are written do they replace the originals (review: a file that could not be written stopped
    format-suites half way, the files before it rewritten; a write cut short left a half file)."""
    staged: dict[Path, Path] = {}
    try:
        for path, text in texts.items():
            temporary = path.with_name(f".{path.name}.formatting")
            temporary.write_text(text)
            staged[path] = temporary
    except OSError as exc:
        for temporary in staged.values():
            temporary.unlink(missing_ok=True)
        raise SuiteDefinitionError(f"{exc.filename}: cannot be written ({exc.strerror}); nothing was changed") from None
    for path, temporary in staged.items():
        os.replace(temporary, path)


def dump(data: dict) -> str:
    """The text of a suite file: GX's serialized suite as JSON indented by two, with a final newline."""
    return json.dumps(data, indent=2) + "\n"


def check_ids(path: Path, data: dict) -> None:
    """Without a fixed id GX invents a new one on every run, and results no longer match across runs."""
    if not data.get("id"):
        raise SuiteDefinitionError(f"{path}: the suite needs an 'id' (a UUID that never changes)")
    seen: dict[str, int] = {}
    for i, exp in enumerate(data["expectations"]):
        id_ = exp.get("id")
        if not id_:
            raise SuiteDefinitionError(f"{path}: expectation {i} ({exp.get('type')}) needs an 'id' (a new UUID)")
        if id_ in seen:
            raise SuiteDefinitionError(f"{path}: expectations {seen[id_]} and {i} share the id {id_}")
        seen[id_] = i


def run_variables(
    models: Mapping[str, Model], day: date | None = None, checked=None, full_refresh: bool = False
) -> dict[str, Any]:
    """What a suite's queries may use besides ``ref`` and ``published``, for a run of ``day`` (None: outside a run,
    as of today, with no day before the lookback): ``{{ run_date }}`` (SQL date), ``{{ source('t') }}`` (a raw
    table), ``{{ lookback_start }}`` (SQL date: the first day every incremental model reads again in this run, the
    shortest lookback's start; raw rows created before it are not read again by an incremental run),
    ``{{ start_date }}`` (SQL date: GREENERY_START_DATE, before which no run builds a day's daily marts),
    ``{{ valid_since }}`` (SQL timestamptz: rows created before it are placeholders the models' row rules refuse:
    render.py's ``valid_since`` at the day's end), ``{{ full_refresh }}`` (SQL boolean: the run reads all of raw
    again, and publishes it as it is) and ``{{ quarantined('m') }}`` (the rows this run quarantined
    from staging model ``m``, with their ``rule``: the validate task passes its build's table; outside a run, none,
    with the columns of ``checked(m)``, the table the suite checks: by default the published one)."""
    settings = config.get()
    raw_schema = settings.raw_schema
    if day is None:  # what a run last read is unknown: no day is before the lookback, and the check is inert
        run_date, start = "current_date", "'-infinity'::date"
        valid_since = f"(current_date - {FAR_PAST.days})::timestamptz"
    else:
        interval = Interval.for_day(day)  # as render.py renders the models for the day
        starts = [incremental_since(m, interval) for m in models.values() if m.materialized == "incremental"]
        run_date, start = sql_literal(day), sql_literal(max(starts, default=interval.start).date())
        valid_since = sql_literal(render_valid_since(interval.end))
    return {
        "run_date": run_date,
        "start_date": sql_literal(settings.start_date),
        "lookback_start": start,
        "valid_since": valid_since,
        "full_refresh": "true" if full_refresh else "false",
        "source": lambda table: f"{raw_schema}.{table}",
        "quarantined": lambda name: nothing_quarantined(checked(name) if checked else models[name].relation),
    }


def nothing_quarantined(relation: str) -> str:
    """An empty quarantine of the model whose table is ``relation``: its columns and ``rule``, no row."""
    return f"(select null::text as rule, * from {relation} where false)"


def models_read(suite: SuiteFile) -> frozenset[str] | None:
    """The models a suite's checks name besides its own (``ref``, ``published``, ``quarantined``); None when one is
    named by the template itself (a loop over names): then it may read any."""
    found: set[str] = set()
    for text in _texts(suite.data["expectations"]):
        for call in _tree(text).find_all(nodes.Call):
            if isinstance(call.node, nodes.Name) and call.node.name in CALLS and call.node.name != "source":
                if not (call.args and isinstance(call.args[0], nodes.Const)):
                    return None
                found.add(call.args[0].value)
    return frozenset(found - {suite.model})


def is_template(text: str) -> bool:
    """Whether a suite's text is rendered (and checked) as Jinja: one test for both (review: a text with only a
    {% if %} was checked, then sent to PostgreSQL unrendered)."""
    return "{{" in text or "{%" in text


def resolve_refs(value: Any, relation, variables: dict[str, Any] | None = None) -> Any:
    """Render ``{{ ref('m') }}`` (through ``relation``) and ``variables`` in every string of a suite.

    The anomaly checks use the variables of :func:`run_variables` and ``{{ published('m') }}`` (the published
    table, where a daily model keeps its history).
    """
    if isinstance(value, str) and is_template(value):
        return compiled(value, _ENV).render(ref=relation, **(variables or {}))
    if isinstance(value, dict):
        return {k: resolve_refs(v, relation, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_refs(v, relation, variables) for v in value]
    return value
