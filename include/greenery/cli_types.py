"""The ``greenery`` CLI's option types and the days a run may build: each refuses a bad value with its rule, before
anything runs."""

from __future__ import annotations

import argparse
import datetime as dt
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from greenery import config


class UsageError(ValueError):
    """The command was asked something it cannot do; the message says what to do instead."""


def days_to_run(start: dt.date, end: dt.date | None) -> list[dt.date]:
    """The days from ``start`` to ``end`` (default: ``start`` alone) a run may build: each one over."""
    if (end := end or start) < start:
        raise UsageError(f"--end-date {end} is before --date {start}; nothing was run")
    today = dt.datetime.now(dt.UTC).date()
    if end > today:  # review: a mistyped year ran, failed and paged on-call
        raise UsageError(f"{end} is after today ({today}, UTC): raw holds nothing of it yet; nothing was run")
    if end == today:  # review: it ran, and published the day's first hours as the whole day (check_source_freshness)
        raise UsageError(f"{end} is today (UTC), not over yet: its run would publish part of it; nothing was run")
    return [start + dt.timedelta(days=n) for n in range((end - start).days + 1)]


def output_folder(path: Path) -> None:
    """Make ``path`` a folder to write to, or refuse it saying why (review: a file above it, ``a-file/sub``, or a
    folder nothing can be made in, ``/proc/gen``, was a traceback)."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{path}: exists and is not a folder; nothing was written")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        failed = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else ""
        raise UsageError(f"{path}: cannot be made a folder{failed}: {exc.strerror}; nothing was written") from None


def span(days: list) -> str:
    """A run of days as the command says it: one day, or the first to the last with their count."""
    return f"{days[0]}" if len(days) == 1 else f"{days[0]} to {days[-1]} ({len(days)} days)"


def day_option(text: str) -> dt.date:
    """A YYYY-MM-DD day. A bad one is refused with its reason: argparse's own message names only the function."""
    try:
        day = config.parse_day(text)  # the rule GREENERY_START_DATE follows (Python takes 20210211 and 2021-W06-4)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day: {exc}") from None
    if day == dt.date.max:  # its run ends at the next midnight, which no date holds (review: an OverflowError)
        raise argparse.ArgumentTypeError(f"must be a day before {day}, got {text}")
    return day


def schema_option(text: str) -> str:
    """A schema name as the settings take one (review: `load-raw --schema Raw` loaded a schema the SQL never reads,
    unquoted, and the next run was green on the old rows)."""
    if not config.SCHEMA_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not {config.SCHEMA_RULE}")
    if text in config.RESERVED_WORDS:  # loadable quoted, but no run could read it (the setting refuses it)
        raise argparse.ArgumentTypeError(f"{text!r} is a word SQL reserves, which the models cannot read unquoted")
    return text


def _option(cast: Callable[[str], Any], noun: str, ok: Callable[[Any], bool], rule: str) -> Callable[[str], Any]:
    """An argparse type: ``cast`` the text, refused as not ``noun`` or breaking ``rule`` (argparse names the type)."""

    def parse(text: str) -> Any:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return value

    return parse


# Upper bounds (review: 1e300 generated for ever, 10**8 days overflowed): 10 times the benchmark's largest scale.
scale_option = _option(
    float, "a number", lambda v: math.isfinite(v) and 0 < v <= 10_000, "a number above 0, at most 10000"
)
span_option = _option(int, "a whole number", lambda v: 1 <= v <= 36_525, "from 1 to 36525 (a century)")
port_option = _option(int, "a port number", lambda v: 1 <= v <= 65535, "a port from 1 to 65535")  # 0: links portless


# What `greenery run --help` says of how it ends (the README's *The CLI* says the rest).
RUN_EXIT_STATUSES = """\
exit status:
  0    every day's run succeeded (warnings and quarantined rows are said on its line)
  1    a day's run failed (its failed tasks are listed) or ended in error; later days were not run
  2    refused or failed before any day ran (an option, a setting, the warehouse), said on the error line
  130  Ctrl-C; 143 SIGTERM, 129 SIGHUP (these two page on-call); 141 its output was closed
  The day's run is failed when stopped; the line says what was published and which days did not run."""


def command(sub: argparse._SubParsersAction, name: str, summary: str, epilog: str | None = None):
    """Subcommand ``name``, its summary in both `greenery --help` and `greenery <name> --help` (``epilog``, as
    written, after its options)."""
    formatter = argparse.RawDescriptionHelpFormatter if epilog else argparse.HelpFormatter
    return sub.add_parser(name, help=summary, description=summary, epilog=epilog, formatter_class=formatter)
