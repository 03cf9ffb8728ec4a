"""Credentials masked in text that leaves the process: alerts, the Data quality view, settings errors, the CLI.

Redaction is best effort over free text (an exception's message, a value echoed back): it knows the shapes
credentials take here (URL logins, ``key=value`` pairs, Slack tokens and webhooks), not every secret.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

REDACTED = "***"

# A key that names a secret, inside a longer name too: GREENERY_SMTP_PASSWORD, PGPASSWORD, api_token, secret_key
# (review: `\bpassword` missed every one of them, `_` being a word character).
_SECRET_NAME = r"[A-Za-z0-9_.-]*(?:password|passwd|pwd|secret|token|api[_-]?key)[A-Za-z0-9_.-]*"  # noqa: S105 - the names of secrets, none itself

_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    # scheme://user:password@host and scheme://token@host (DSNs, URLs with credentials)
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^\s/@<>|]+@"), rf"\1{REDACTED}@"),
    # user:password@host without a scheme (a host[:port] setting given a login)
    (re.compile(r"(?<![\w/.:@-])([\w.+-]+):(?!//)[^\s@<>|'\"]+@(?=[\w\[])"), rf"\1:{REDACTED}@"),
    # Slack tokens: xoxb-, xoxp-, xoxa-, xoxe-, xoxr-, xoxs-, app-level xapp-
    (re.compile(r"\bxox[a-z]-[A-Za-z0-9\-]+"), f"xox-{REDACTED}"),
    (re.compile(r"\bxapp-[A-Za-z0-9\-]+"), f"xapp-{REDACTED}"),
    # Incoming webhooks / workflow triggers
    (
        re.compile(r"(?i)(hooks\.slack(?:-gov)?\.com/(?:services|workflows|triggers)/)[^\s<>|\"'`)\]]+"),
        rf"\1{REDACTED}",
    ),
    # key=value, key: value, "key": "value" (libpq keyword DSNs, config dumps, JSON, a setting echoed back)
    (
        re.compile(rf"(?i)(?<![A-Za-z0-9])({_SECRET_NAME}[\"']?)(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&}}]+)"),
        # A quoted value keeps its quotes: masked again (the view masks what was masked when recorded), it is the same.
        lambda m: m[1] + m[2] + (m[3][0] + REDACTED + m[3][0] if m[3][0] in "'\"" else REDACTED),
    ),
)


def redact(text: str) -> str:
    """Mask credentials in free text: URL logins, Slack tokens, webhook paths, ``password=...``."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def without_login(url: str | None) -> str | None:
    """``url`` without a user and password (review: GREENERY_DATA_DOCS_BASE_URL=https://user:pass@... went into every
    alert's Data Docs button, in the channel, and into the view's links); the browser asks for them instead."""
    if not url:
        return url
    parts = urlsplit(str(url))
    if parts.username is None and parts.password is None:
        return str(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
