"""The stakeholders' daily digest as an email: HTML with the trend chart inlined, and a plain-text part.

The text of both parts lives in Jinja templates (``templates/digest.html``, escaped; ``templates/digest.txt``);
this module only prepares the values they show. The MIME layout is the one mail clients expect for an
HTML mail with an inline image and a text fallback:

    multipart/alternative
      text/plain                 the digest as text, with the trend as sparklines
      multipart/related
        text/html                <img src="cid:...">
        image/png                Content-ID, Content-Disposition: inline

Only http(s) links from ``stats["links"]`` (built from the deployment's base URL by ``greenery.links``)
become hrefs.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Any
from urllib.parse import urlsplit

from greenery import bidi
from greenery.alerts import chart
from greenery.alerts.text import as_int, ranked_rules
from greenery.redaction import redact
from greenery.trend import Point

CHART_FILENAME = "greenery-trend.png"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@functools.cache
def _templates():
    import jinja2  # only the task that mails needs it

    return jinja2.Environment(
        loader=jinja2.PackageLoader("greenery.alerts", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), disabled_extensions=("txt",)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        # Every value shown, in both parts: direction controls as their escapes (review: an RLO in a note reversed it).
        finalize=lambda value: bidi.visible(value) if isinstance(value, str) else value,
    )


def _one_line(value: Any, limit: int = 200) -> str:
    """Header-safe text: no control characters (a newline would start a header of its own)."""
    text = _CONTROL.sub(" ", bidi.visible(redact(str(value if value is not None else "")))).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _http_url(value: Any) -> str | None:
    if isinstance(value, str) and not any(c.isspace() for c in value):
        parts = urlsplit(value)
        if parts.scheme in ("http", "https") and parts.netloc:
            return value
    return None


def _rules(broken: Any) -> str:
    """``future_timestamp 4, orphan_user 2``: one line, most rows first (alerts/text.ranked_rules)."""
    ranked, hidden = ranked_rules(broken)
    shown = [f"{_one_line(rule, 60)} {n:,}" for rule, n in ranked] + ([f"… {hidden} more"] if hidden else [])
    return ", ".join(shown)


def subject(stats: Mapping[str, Any]) -> str:
    passed, evaluated = as_int(stats.get("checks_passed")), as_int(stats.get("checks_evaluated"))
    day = stats.get("logical_date") or "n/a"
    scope = (stats.get("checks_scope") or "").partition(" (")[0]  # the subject's line: without the aside
    return _one_line(f"Greenery, state of the data {day}: {passed:,}/{evaluated:,} checks passed{scope}")


def view(stats: Mapping[str, Any], points: Sequence[Point], cid: str | None) -> dict[str, Any]:
    """What the templates show, from the same stats as the Slack note plus the trend."""
    passed, evaluated = as_int(stats.get("checks_passed")), as_int(stats.get("checks_evaluated"))
    series = chart.series_of(points)
    first_day = points[0].day if points else None
    trend = [
        {
            "label": s.label,
            "latest": s.text(chart.latest(s.values)),
            "note": chart.note(s, [p.day for p in points]),
            "spark": chart.sparkline(s.values),
            "color": "#{:02x}{:02x}{:02x}".format(*s.color),
        }
        for s in series
    ]
    quarantined = {str(k): as_int(v) for k, v in (stats.get("quarantined") or {}).items()}
    rules = stats.get("quarantined_rules") if isinstance(stats.get("quarantined_rules"), Mapping) else {}
    links = stats.get("links") or {}
    return {
        "dag_id": str(stats.get("dag_id") or "greenery"),
        "day": str(stats.get("logical_date") or "n/a"),
        "passed": passed,
        "evaluated": evaluated,
        "all_passed": passed == evaluated,
        "checks_scope": str(stats.get("checks_scope") or ""),
        "notes": [str(n) for n in stats.get("notes") or []][:5],
        "trend": trend,
        "window": {"days": len(points), "first": first_day, "last": points[-1].day if points else None},
        "chart": {"cid": cid, "alt": chart.describe(points), "width": chart.WIDTH, "height": chart.HEIGHT},
        "tables": sorted((str(k), as_int(v)) for k, v in (stats.get("rows") or {}).items()),
        # Each table's rows with the rules they broke, as Slack says them (review: the email had counts only).
        "quarantined": [(name, n, _rules(rules.get(name))) for name, n in sorted(quarantined.items())],
        "quarantined_total": sum(quarantined.values()),
        "links": [
            (label, url)
            for key, label in (("run", "Open the run in Airflow"), ("quality", "Data quality view"))
            if (url := _http_url(links.get(key)))
        ],
    }


def build(
    stats: Mapping[str, Any], points: Sequence[Point], png: bytes, *, sender: str, recipients: Sequence[str]
) -> EmailMessage:
    """The digest, ready for SMTP: multipart/alternative (text, related(html, png))."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "greenery.invalid"  # "Name <name@domain>" too
    cid = make_msgid("trend", domain=domain)  # "<...@domain>"; the HTML refers to it without the brackets
    values = view(stats, points, cid[1:-1])
    message = EmailMessage()
    message["Subject"] = subject(stats)
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid("digest", domain=domain)
    message.set_content(_templates().get_template("digest.txt").render(**values), subtype="plain", charset="utf-8")
    message.add_alternative(_templates().get_template("digest.html").render(**values), subtype="html", charset="utf-8")
    html = message.get_payload()[1]
    html.add_related(png, maintype="image", subtype="png", cid=cid, filename=CHART_FILENAME, disposition="inline")
    return message
