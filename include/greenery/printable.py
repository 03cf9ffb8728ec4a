"""Untrusted text shown, not obeyed: every character a display would act on becomes its visible escape.

A value from raw data (a product's name), an error quoting one, or a server's answer may hold terminal escape
sequences (OSC 52 writes the clipboard, ``ESC[8m`` hides what follows), a carriage return that overwrites the line,
a newline that adds a line of its own (a forged figure under the real ones), or a direction control that reverses
what follows it. Each becomes ``\\x1b``, ``\\r``, ``\\n``, ``\\u202e``: the reader sees what the value holds.
"""

from __future__ import annotations


def printable(text: object) -> str:
    """``text`` on one line, each non-printable character (controls, line breaks, format characters) escaped."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text))
