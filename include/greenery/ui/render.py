"""The Data quality page as HTML: Jinja templates under ``templates/`` with escaping on, and their filters."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import jinja2
from markupsafe import Markup, escape

from greenery import config

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("greenery.ui", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
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
    """Only http(s) or site-relative links from the summary become hrefs (never javascript: and such)."""
    if isinstance(value, str) and (value.startswith(("http://", "https://")) or value.startswith("/")):
        return value
    return None


def _breakable(value: str | None, after: str = "_.") -> Markup:
    """Escaped, with line-break opportunities after the characters ``after`` (long expectation names)."""
    text = escape(value if value is not None else "—")
    for char in after:
        text = text.replace(char, Markup(f"{char}<wbr>"))  # noqa: S704 - a literal character of ours
    return text


def _short(run_id: str | None, limit: int = 44) -> str:
    run_id = run_id or "—"
    return run_id if len(run_id) <= limit else run_id[: limit - 1] + "…"


_ENV.filters.update(when=_when, observed=_observed, safe_url=_safe_url, short=_short, breakable=_breakable)


def render_page(data: dict[str, Any] | None, *, error: str | None = None, docs: bool = False) -> str:
    data = data or {"dag_id": config.DAG_ID, "latest_run": None, "serving": None, "tables": [], "failures": []}
    run = data.get("latest_run")
    quarantined = data.get("quarantined") or {}
    return _ENV.get_template("page.html").render(
        base="",
        error=error,
        docs=docs,
        dag_id=data["dag_id"],
        run=run,
        serving=data.get("serving"),
        tables=data["tables"],
        failures=data["failures"],
        run_failures_shown=sum(len(t["failures"]) for t in data["tables"] if t.get("in_latest_run")),
        quarantined=quarantined,
        quarantined_total=sum(quarantined.values()),
        history=data.get("history") or [],
    )


def render_unauthorized(*, title: str, detail: str, home: str, base: str) -> str:
    return _ENV.get_template("unauthorized.html").render(title=title, detail=detail, home=home, base=base)
