"""Text for Slack: mrkdwn escaping of redacted values, and Slack's size limits."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from greenery import bidi
from greenery.redaction import redact

# Slack limits (https://api.slack.com/reference/block-kit/blocks).
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_HEADER_TEXT = 150
MAX_FALLBACK_TEXT = 3000
# Slack refuses a message whose blocks hold about 13,000 characters in all (msg_blocks_too_long, in none of its
# documented limits: slackapi/bolt-js#2509), and a refused alert pages nobody: the alerts stay under this.
MAX_BLOCKS_TEXT = 12_000

# Review: a right-to-left override in a sample key made Slack show the rest of the key reversed, so on-call read
# (and looked up) another key: every bidirectional control is shown as its escape (bidi.visible).


def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters; show bidi controls escaped."""
    return bidi.visible(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clean(value: Any, limit: int = 300) -> str:
    """Any input value → redacted, length-capped, mrkdwn-escaped text."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    text = redact(text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return escape(text)


def code(value: Any, limit: int = 300) -> str:
    """Inline code span; backticks inside would end the span, so they become quotes."""
    text = clean(value, limit).replace("`", "'").replace("\n", " ")
    return f"`{text}`" if text else ""


def truncate(text: str, limit: int) -> str:
    """Cut escaped mrkdwn to ``limit`` characters without splitting an entity or leaving a code block open."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 4]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    if cut.count("```") % 2:
        cut += "```"
        if len(cut) > limit - 1:  # closing the block made it too long: drop the block entirely
            cut = cut[: cut.find("```")]
    return cut + "…"


def block_chars(value: Any) -> int:
    """Characters of every string in Block Kit ``value`` (texts, labels, URLs, types): more than Slack counts."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(block_chars(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(block_chars(v) for v in value)
    return 0


def within(blocks: list[dict], budget: int) -> list[dict]:
    """The first of ``blocks`` that together hold at most ``budget`` characters (:func:`block_chars`)."""
    kept: list[dict] = []
    for block in blocks:
        budget -= block_chars(block)
        if budget < 0:
            break
        kept.append(block)
    return kept


def plain(text: str, limit: int) -> str:
    text = bidi.visible(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def link(url: str | None, label: str) -> str | None:
    """A clickable mrkdwn link for http(s) URLs; other schemes (file://) are shown as code."""
    if not url:
        return None
    url = redact(str(url))
    if urlsplit(url).scheme.lower() in ("http", "https"):
        return f"<{escape(url).replace('|', '%7C')}|{label}>"
    return f"{label}: {code(url, 1000)}"


def as_int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def fmt_int(value: Any) -> str:
    return f"{as_int(value):,}"


def counted(value: Any, noun: str) -> str:
    """``1 row``, ``1,234 rows``: a count with its noun, singular for one."""
    n = as_int(value)
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def found(summary: Any) -> str:
    """``2 warnings, 3 rows quarantined``: what a published run's checks found; '' when nothing."""
    warnings = as_int(summary.get("failed_warning"))
    held = sum(as_int(n) for n in (summary.get("quarantined") or {}).values())
    said = [counted(warnings, "warning")] if warnings else []
    return ", ".join(said + ([f"{counted(held, 'row')} quarantined"] if held else []))


def ranked_rules(broken: Any, limit: int = 4) -> tuple[list[tuple[str, int]], int]:
    """The rules a model's quarantined rows broke, most rows first (then by name), at most ``limit`` of them, and how
    many more there are. jsonb (the record, Airflow's XCom on PostgreSQL) keeps keys shortest first, not as written."""
    if not isinstance(broken, Mapping) or not broken:
        return [], 0
    ranked = sorted(((str(rule), as_int(n)) for rule, n in broken.items()), key=lambda item: (-item[1], item[0]))
    return ranked[:limit], max(0, len(ranked) - limit)


def checked_in(checked: int, total: int) -> str:
    """ ", in the N tables this run checked (of M: ...)" when a run validated only some of the tables (a model cleared
    with its downstream tasks validates what it rebuilt), else "". Review: the digest of such a run said "10/10 checks
    passed" beside "13 tables refreshed", as if every table had been checked."""
    if not checked or checked >= total:
        return ""
    others = "the others' latest results: the Data quality view"
    return f", in the {checked:,} tables this run checked (of {total:,}; {others})"
