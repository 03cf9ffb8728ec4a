"""Untrusted text shown, not obeyed: every character a display would act on becomes its visible escape.

A value from raw data (a product's name), an error quoting one, or a server's answer may hold terminal escape
sequences (OSC 52 writes the clipboard, ``ESC[8m`` hides what follows), a carriage return that overwrites the line,
a newline that adds a line of its own (a forged figure under the real ones), or a direction control that reverses
what follows it. Each becomes ``\\x1b``, ``\\r``, ``\\n``, ``\\u202e``: the reader sees what the value holds. Other
characters stay as they are (a no-break space, an emoji's joiner: review of the first cut, which escaped them).
"""

from __future__ import annotations

import unicodedata

from greenery import bidi

_OBEYED = frozenset(bidi.CONTROLS)


def printable(text: object) -> str:
    """``text`` on one line: control characters (C0 with the tab, which breaks the CLI's columns; DEL, C1), line and
    paragraph separators and direction controls each as its escape."""
    return "".join(
        c.encode("unicode_escape").decode("ascii")
        if unicodedata.category(c) in ("Cc", "Zl", "Zp") or c in _OBEYED
        else c
        for c in str(text)
    )
