"""The view's HTML: Jinja templates under ``templates/`` with escaping on, and their filters."""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from markupsafe import Markup, escape

from greenery import bidi, config, links
from greenery.checks.summary import SAMPLE_KEY_CHARS
from greenery.ui.data_docs import ValidationRun

STATIC_DIR = Path(__file__).parent / "static"
LOCAL_DOCS = "docs/"  # the app's own Data Docs, relative to the page
_HEAD = re.compile(r"<head(\s[^>]*)?>", re.IGNORECASE)


def _finalize(value: Any) -> Any:
    """Every ``{{ }}`` of the templates, in text and in attributes (a tooltip too): no raw direction control."""
    return bidi.visible(value) if isinstance(value, str) else value


_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("greenery.ui", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    finalize=_finalize,
)


def _when(value: str | None) -> str:
    if not value:
        return "—"
    return dt.datetime.fromisoformat(value).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _observed(value: Any, limit: int = 160) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, sort_keys=True, default=str, separators=(", ", ": "))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _safe_url(value: str | None) -> str | None:
    """Only absolute http(s) links, or paths of this origin, from the summary become hrefs.

    Never ``javascript:`` and such, and never ``//host`` or ``/\\host`` (another host, for a browser).
    """
    if not isinstance(value, str) or any(c.isspace() or ord(c) < 0x20 or c == "\\" for c in value):
        return None
    parts = urlsplit(value)
    if parts.scheme in ("http", "https") and parts.netloc:
        return value
    if not parts.scheme and not parts.netloc and value.startswith("/") and not value.startswith("//"):
        return value
    return None


def _gx_time(folder: str) -> str:
    """GX's run-time folder name (``20240302T010203.456789Z``) as the page writes times."""
    try:
        at = dt.datetime.strptime(folder, "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return folder
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")


def _breakable(value: str | None, after: str = "_.") -> Markup:
    """Escaped, with line-break opportunities after the characters ``after`` (long expectation names)."""
    text = escape(value if value is not None else "—")
    for char in after:
        text = text.replace(char, Markup(f"{char}<wbr>"))  # noqa: S704 - a literal character of ours
    return text


def _isolated(value: Any) -> Markup:
    """A value from data as text of its own direction (``<bdi>``): right-to-left text in it cannot reorder what
    the page writes around it (``×2``, ``, ``, the next value). Escaped, its direction controls made visible."""
    text = value if isinstance(value, Markup) else escape(str(value))
    return Markup("<bdi>{}</bdi>").format(bidi.visible(text))


def _short(run_id: str | None, limit: int = 44) -> str:
    run_id = run_id or "—"
    return run_id if len(run_id) <= limit else run_id[: limit - 1] + "…"


_ENV.filters.update(
    when=_when,
    observed=_observed,
    safe_url=_safe_url,
    short=_short,
    breakable=_breakable,
    gx_time=_gx_time,
    bdi=_isolated,
)
# A failed task's message is shown up to this many characters, the rest behind "the whole message" (user trial).
_ENV.globals["WHY_CHARS"] = 1500
_ENV.globals["CLEAR_STEPS"] = links.CLEAR_STEPS  # Airflow's words, as the alerts say them


def docs_root() -> str:
    """Where the page's Data Docs links start: ``GREENERY_DATA_DOCS_BASE_URL`` when set, as in the alerts; else the
    app's own ``docs/``, relative to the page, so it works under any base path of the API server. Lenient, as
    links.docs_url: another setting's bad value must not take the page down (review: a bare 500)."""
    return links.docs_url() if config.get_lenient()[0].data_docs_base_url else LOCAL_DOCS


def _rules(held: Any) -> dict[str, dict[str, int]]:
    """The rules each model's quarantined rows broke, with their rows, as recorded: a record is data, so only
    mappings of counts, which the page sorts (review: a malformed one would fail the page)."""
    pairs = held.items() if isinstance(held, dict) else ()
    count = lambda n: n if isinstance(n, int) and not isinstance(n, bool) else 0  # noqa: E731
    return {str(m): {str(r): count(n) for r, n in rules.items()} for m, rules in pairs if isinstance(rules, dict)}


def render_page(
    data: dict[str, Any] | None, *, error: str | None = None, docs: bool = False, run_id: str | None = None
) -> str:
    """The page of ``data`` (report.py's); ``run_id``: the run asked for (its JSON link asks for it too)."""
    data = data or {"dag_id": config.DAG_ID, "latest_run": None, "serving": None, "tables": [], "failures": []}
    run = data.get("latest_run")
    quarantined = data.get("quarantined") or {}
    root = docs_root()
    return _ENV.get_template("page.html").render(
        base="",
        asked_run=run_id,
        error=error,
        docs=docs,
        docs_root=root,
        docs_elsewhere=root != LOCAL_DOCS,  # another server's: opened in the whole window, not the UI's iframe
        dag_id=data["dag_id"],
        run=run,
        serving=data.get("serving"),
        tables=data["tables"],
        failures=data["failures"],
        root_causes=data.get("root_causes") or [],
        notes=data.get("notes") or [],
        task_failures=(failed := data.get("task_failures") or []),
        only_earlier_failures=bool(failed) and all(t.get("earlier_attempt") for t in failed),
        run_link=_run_link(run),
        log_link=log_link(run, data),
        run_failures_shown=sum(len(t["failures"]) for t in data["tables"] if t.get("in_latest_run")),
        quarantined=quarantined,
        quarantined_rules=_rules((run or {}).get("quarantined_rules")),
        quarantined_total=sum(quarantined.values()),
        history=data.get("history") or [],
        later_runs=data.get("later_runs") or 0,
        previous_validation=(previous := data.get("previous_validation")),
        previous_link=links.quality_url(previous["run_id"]) if previous else None,
        own_page_link=links.quality_url(run["run_id"]) if previous else None,
        cleared_and_failed=data.get("cleared_and_failed"),
        tables_as_of=data.get("tables_as_of"),
        key_chars=SAMPLE_KEY_CHARS,
    )


def log_link(run: dict[str, Any] | None, data: dict[str, Any]) -> str | None:
    """The run's task log in the Airflow UI, from the deployment's base URL now (not the URL stored when it ran: another
    host or port since, e.g. a CLI run before ``greenery ui --port``)."""
    return links.task_url(run["run_id"], _log_task(run, data)) if run else None


def _log_task(run: dict[str, Any], data: dict[str, Any]) -> str:
    """validate's log, or, for a run that failed before it, the log of its first failed task."""
    failed = data.get("task_failures") or []
    return failed[0]["task_id"] if run.get("validated") is False and failed else "validate"


def _run_link(run: dict[str, Any] | None) -> str | None:
    """The run's page in the Airflow UI, from the deployment's base URL (None outside Airflow)."""
    return links.run_url(run["run_id"]) if run else None


def render_unauthorized(*, title: str, detail: str, home: str, base: str, sign_in: bool = True) -> str:
    """An error page for a browser: sign in (401, 403), or nothing recorded for the run asked for (404)."""
    page = _ENV.get_template("unauthorized.html")
    return page.render(title=title, detail=detail, home=home, base=base, sign_in=sign_in)


@functools.cache
def _inline_style(name: str) -> Markup:
    """Our stylesheet ``static/<name>`` as a ``<style>`` element: the Data Docs' policy loads no URL at all."""
    css = Markup((STATIC_DIR / name).read_text())  # noqa: S704 - our own file, not data
    return Markup(_ENV.get_template("docs_style.html").render(css=css))  # noqa: S704 - rendered with escaping on


def render_docs_index(runs: list[ValidationRun], *, app_root: str, docs_root: str) -> str:
    """The Data Docs' index: each run's suite pages. Links are relative to where it is served."""
    return _ENV.get_template("docs_index.html").render(
        runs=runs, app_root=app_root, docs_root=docs_root, style=_inline_style("style.css")
    )


def with_docs_style(html: str) -> str:
    """A GX page with our stylesheet first in its head; the first ``<head>`` is GX's own (data come later). GX writes
    data values as they are: each direction control in the page shows as its escape (review: an RLO reversed a
    sample key and the rest of its line); GX's own markup has none."""
    html = bidi.visible(html)
    found = _HEAD.search(html)
    at = found.end() if found else 0
    # Plain str: adding a Markup to GX's str would escape GX's whole page.
    return html[:at] + str(_inline_style("docs.css")) + html[at:]
