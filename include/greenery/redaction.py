"""Credentials masked in text that leaves the process: alerts, the Data quality view, settings errors, the CLI.

Redaction is best effort over free text (an exception's message, a value echoed back): it knows the shapes
credentials take here (URL logins, ``key=value`` pairs, Slack tokens and webhooks), not every secret.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

REDACTED = "***"

# Every pattern is linear in the text (review: nested scans took 23 s on 4 kB of "-token", and redaction runs on every
# recorded error and on every page of the view): possessive quantifiers, and matches that start only where a token does.
_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # scheme://user:password@host and scheme://token@host (DSNs, URLs with credentials)
    (re.compile(r"(?<![A-Za-z0-9+.\-])([A-Za-z][A-Za-z0-9+.\-]*+://)[^\s/@<>|]++@"), rf"\1{REDACTED}@"),
    # "user:password@host" quoted without a scheme, as libpq names a host it could not resolve (review)
    (re.compile(r"(?<=[\"'])([\w.+-]++):(?!//)[^\s@<>|'\"]++@"), rf"\1:{REDACTED}@"),
    # Slack tokens: xoxb-, xoxp-, xoxa-, xoxe-, xoxr-, xoxs-, app-level xapp-
    (re.compile(r"\bxox[a-z]-[A-Za-z0-9\-]++"), f"xox-{REDACTED}"),
    (re.compile(r"\bxapp-[A-Za-z0-9\-]++"), f"xapp-{REDACTED}"),
    # Incoming webhooks / workflow triggers
    (
        re.compile(r"(?i)(hooks\.slack(?:-gov)?\.com/(?:services|workflows|triggers)/)[^\s<>|\"'`)\]]++"),
        rf"\1{REDACTED}",
    ),
)
# name=value (libpq keyword DSNs, PGPASSWORD=, a setting echoed back) and "name": value (JSON, a dict), where the
# name holds a word for a secret, inside a longer one too (GREENERY_SMTP_PASSWORD, api_token, secret_key: review).
# Not "name: value" unquoted: that is how messages read ("stg_secret_santa: 4 rows failed", review of the first cut).
_PAIR = re.compile(r"(?<![A-Za-z0-9_.-])([A-Za-z0-9_.-]++)(\s*+=\s*+|[\"']\s*+:\s*+)")
_SECRET_WORD = re.compile(r"(?i)password|passwd|pwd|secret|token|api[_-]?key")
# A quoted value, or any other up to a separator (a quote inside it too, and a quote left open: a message cut short).
_VALUE = re.compile(r"\*\*\*(?![^\s,;&}\"'])|\"[^\"]*+\"|'[^']*+'|[\"']?[^\s,;&}]++")  # *** first: masked already


def redact(text: str) -> str:
    """Mask credentials in free text: URL logins, Slack tokens, webhook paths, ``password=...``. Masking masked text
    changes nothing (the view masks what was masked when recorded); a quoted value keeps its quotes."""
    for _ in range(3):  # a pass may uncover a shape the one before hid (contrived: fuzzing found one in 200,000)
        if (masked := _masked(text)) == text:
            break
        text = masked
    return text


def _masked(text: str) -> str:
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    kept, start = [], 0
    for pair in _PAIR.finditer(text):
        if pair.start() < start or not _SECRET_WORD.search(pair[1]):
            continue
        if (value := _VALUE.match(text, pair.end())) is None:
            continue
        quote = value[0][0] if value[0][0] in "'\"" else ""
        kept += [text[start : pair.end()], f"{quote}{REDACTED}{quote}"]
        start = value.end()
    return "".join(kept) + text[start:]


def without_login(url: str | None) -> str | None:
    """``url`` without a user and password (review: GREENERY_DATA_DOCS_BASE_URL=https://user:pass@... went into every
    alert's Data Docs button, in the channel, and into the view's links); the browser asks for them instead."""
    if not url:
        return url
    parts = urlsplit(str(url))
    if parts.username is None and parts.password is None:
        return str(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
