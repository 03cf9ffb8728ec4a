"""Text-direction controls in data, made visible: a reader sees what a value holds, not what it makes a display do.

An RLO (U+202E) in a sample key displays the key reversed and flips the rest of its line; an isolate or mark
moves the text around it. Each control becomes its escaped form (``\\u202e``), visibly, wherever a value from
data is shown: the Slack alerts (alerts/text.py), the digest email (alerts/digest_email.py), the GX Data Docs pages
the view serves and the Data quality view (ui/render.py, whose templates also isolate each value in ``<bdi>`` so
right-to-left text in one value cannot reorder its neighbours). The JSON keeps the exact values.
"""

from __future__ import annotations

from typing import TypeVar

# Embeddings and overrides, isolates, the marks (Arabic letter mark too): every explicit formatting character of
# Unicode's bidirectional algorithm (UAX #9, table 4).
CONTROLS = (
    [chr(c) for c in range(0x202A, 0x202F)] + [chr(c) for c in range(0x2066, 0x206A)] + ["\u200e", "\u200f", "\u061c"]
)
_VISIBLE = str.maketrans({c: f"\\u{ord(c):04x}" for c in CONTROLS})

Text = TypeVar("Text", bound=str)


def visible(text: Text) -> Text:
    """``text`` with each direction control as its escape (``\\u202e``); a Markup stays a Markup."""
    return text.translate(_VISIBLE)
