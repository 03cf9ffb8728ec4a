"""Slack Block Kit blocks the alerts are made of: a header, a section, a context line, a divider, link buttons.

Each keeps to Slack's limits (a header's plain text, a section's mrkdwn: alerts/text.py) and a button only takes a
link that opens (http or https, without a login in it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from greenery.alerts.text import MAX_HEADER_TEXT, MAX_SECTION_TEXT, plain, truncate
from greenery.redaction import without_login


def header(text: str) -> dict:
    return {"type": "header", "text": {"type": "plain_text", "text": plain(text, MAX_HEADER_TEXT), "emoji": True}}


def section(text: str, block_id: str | None = None) -> dict:
    block: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, MAX_SECTION_TEXT)}}
    if block_id:
        block["block_id"] = block_id
    return block


def context(text: str) -> dict:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(text, MAX_SECTION_TEXT)}]}


DIVIDER = {"type": "divider"}


def buttons(links: Mapping[str, str | None]) -> dict | None:
    """Block Kit buttons for the links that open (http or https only)."""
    labels = {"run": "Open the run", "log": "Task log", "quality": "Data quality", "docs": "Data Docs"}
    elements = []
    for key, label in labels.items():
        url = without_login(links.get(key))
        if url and urlsplit(str(url)).scheme.lower() in ("http", "https") and len(url) <= 3000:
            button = {"type": "button", "action_id": f"open-{key}", "url": url}
            button["text"] = {"type": "plain_text", "text": label}
            if key == "run":
                button["style"] = "primary"
            elements.append(button)
    return {"type": "actions", "block_id": "links", "elements": elements} if elements else None
