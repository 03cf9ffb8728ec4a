"""Every setting of the pipeline, read from the environment in this one place.

Other modules call :func:`get` and read attributes; none of them reads ``GREENERY_*`` variables itself
(``tests/test_architecture.py`` enforces it). :func:`get` reads the environment on every call, so a test
or a task that changes a variable sees it at once; it costs microseconds.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import math
import os
import re
import urllib.parse
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

from greenery import asset_names
from greenery.asked_names import AskedNames
from greenery.redaction import REDACTED, redact
from greenery.sql_words import RESERVED_WORDS

DAG_ID = "greenery_daily"
ALERT_CONN_ID = "slack_alerts"  # GREENERY_ALERT_CONN_ID's default; not defined: a setup without Slack
WAREHOUSE_CONN_ID = "greenery_warehouse"  # GREENERY_WAREHOUSE_CONN_ID's default
# The layers are also the schemas readers use; their order is the build order. snapshots keep history.
LAYERS = ("staging", "snapshots", "intermediate", "marts")
QUARANTINE_SCHEMA = "quarantine"  # the rows staging holds back, per model (materialize/quarantine.py)
# load-raw fills a schema's new tables in <schema><LOADING_SUFFIX> (sources/load.py) before it swaps them in.
LOADING_SUFFIX = "__loading"
# What the SQL can write unquoted, as the models do. Not pg_...: PostgreSQL reserves that prefix and refused the
# side schema with a traceback (review). At most 63 - len(LOADING_SUFFIX) characters: PostgreSQL cuts names to 63,
# so a longer name's side schema was the target's own name, and the load failed with a misleading error (review).
SCHEMA_MAX_CHARS = 63 - len(LOADING_SUFFIX)
SCHEMA_NAME = re.compile(rf"(?!pg_)[a-z_][a-z0-9_]{{0,{SCHEMA_MAX_CHARS - 1}}}")
SCHEMA_RULE = (
    "a plain lower-case schema name (letters a-z, digits, underscores; not starting with a digit, nor with pg_,"
    f" which PostgreSQL reserves; at most {SCHEMA_MAX_CHARS} characters, so that load-raw's side schema"
    f" <name>{LOADING_SUFFIX} fits PostgreSQL's 63)"
)
INCLUDE_DIR = Path(__file__).resolve().parent.parent
PROJECT_DIR = INCLUDE_DIR.parent


# Upper bounds of the durations: generous, but within what Airflow's timers and datetime can hold.
DAY_SECONDS, WEEK_MINUTES, YEAR_HOURS = 24 * 3600, 7 * 24 * 60, 366 * 24


class SettingError(ValueError):
    """An environment variable holds a value the pipeline cannot use; the message names it."""

    def __init__(self, message: str) -> None:
        # The value echoed may hold a credential (a login in an address): the message pages on-call and is kept.
        super().__init__(redact(message))


@dataclass(frozen=True)
class Settings:
    warehouse_conn_id: str
    raw_schema: str
    sql_dir: Path
    expectations_dir: Path
    # Assets name the published marts as postgres://<authority>/<database>/<schema>/<table>; the URI must be
    # known at parse time (no connection lookup there), so the warehouse's address for it comes from here.
    asset_authority: str
    asset_database: str
    # The earliest day a run builds (an earlier one fails at its first task, with an alert); set it earlier
    # to backfill older history. The DAG itself has no start_date, so Airflow never skips such a run silently.
    start_date: dt.date
    state_dir: Path
    data_docs_base_url: str | None
    alert_conn_id: str
    alert_channel: str | None
    # An unchanged warning (same check, same count) is not sent again within this window.
    alert_suppress: dt.timedelta
    summary_conn_id: str | None
    summary_channel: str | None
    # The stakeholders' digest by email, off unless a connection is named: an Airflow SMTP connection (its
    # extra ``from_email`` is the sender) and the recipients.
    digest_email_conn_id: str | None
    digest_email_to: tuple[str, ...]
    retries: int
    retry_delay: dt.timedelta
    task_timeout: dt.timedelta
    alert_retries: int
    alert_retry_delay: dt.timedelta
    # A run's build schemas outlive the run for debugging; those of runs idle for longer are dropped.
    build_ttl: dt.timedelta
    # How many warehouse connections validation runs its suites on at once (checks/gx.py).
    validation_connections: int
    # How long a publish waits, in short tries, for other sessions' locks on published tables (lock_waits.py).
    publish_lock_wait: dt.timedelta
    # Whether the DAG takes Airflow backfills: commands running Airflow on SQLite turn it off (dev/local_airflow.py).
    allow_backfills: bool

    @property
    def asset_uri_prefix(self) -> str:
        return f"postgres://{self.asset_authority}/{self.asset_database}/marts"


def _text(env: Mapping[str, str], name: str, default: str | None) -> str | None:
    """The variable's value; unset or empty means the default."""
    return env.get(name) or default


_KINDS = {int: "a whole number", float: "a number"}


def _number(env: Mapping[str, str], name: str, default: str, kind=float, minimum=0, *, maximum):
    """A number within [minimum, maximum]: NaN, infinity or a value no timer can hold is refused here, in one line,
    not deep in a task or in Airflow's DAG parse (review: nan and inf ended in tracebacks, 1e12 minutes failed two
    tasks with an OverflowError and paged without naming the setting)."""
    text = env.get(name) or default  # empty: the default, as everywhere (review: Compose's ${NAME:-} passes it)
    try:
        if "_" in text or not text.isascii():  # Python reads 1_0 as 10 and Arabic-Indic digits (review)
            raise ValueError(text)
        value = kind(text)
    except ValueError:
        raise SettingError(f"{name}={text!r}: expected {_KINDS[kind]}") from None
    if not math.isfinite(value) or value < minimum or value > maximum:
        # -inf: the caller checks the floor itself (trial: a task timeout of -1 was told "from 0", and 0 is refused)
        bounds = f"at most {maximum}" if minimum == -math.inf else f"from {minimum} to {maximum}"
        raise SettingError(f"{name}={text!r}: expected a value {bounds}")
    return value


def _schema(env: Mapping[str, str], name: str, default: str) -> str:
    """A schema name the SQL can write as it is: lower case letters, digits and underscores (review: the loader
    quoted "Raw" while the models read raw, so a run published the old data behind a green run), and no word SQL
    reserves (review: raw schema 'order' loaded, then the first model failed on a syntax error and paged as a broken
    model file)."""
    text = _text(env, name, default)
    if not SCHEMA_NAME.fullmatch(text):
        raise SettingError(f"{name}={text!r}: expected {SCHEMA_RULE}")
    if text in RESERVED_WORDS:
        raise SettingError(
            f"{name}={text!r}: a word SQL reserves (the models write the schema unquoted): choose another name"
        )
    return text


MIN_BUILD_TTL = dt.timedelta(hours=1)


def _asset_authority(env: Mapping[str, str], name: str, default: str) -> str:
    """Review: 'warehouse:notaport' or 'warehouse:5432/x' made the DAG an import error, `greenery run` a traceback."""
    text = _text(env, name, default)
    if not asset_names.is_authority(text):
        shown = f"{REDACTED}@{text.rpartition('@')[2]}" if "@" in text else text  # a login given with it (review)
        raise SettingError(f"{name}={shown!r}: expected host[:port] (a host name or [IPv6 address], port 1-65535)")
    return text


def _asset_database(env: Mapping[str, str], name: str, default: str) -> str:
    text = _text(env, name, default)
    if not asset_names.DATABASE.fullmatch(text):
        raise SettingError(f"{name}={text!r}: expected a database name of letters, digits, '.', '_', '-', '~'")
    return text


def _sql_dir(env: Mapping[str, str], name: str, default: Path, need_models: bool = True) -> Path:
    """A folder holding models: the DAG discovers them when it is parsed, where none is an import error (review)."""
    path = Path(env.get(name) or default)
    if need_models and not any(next((path / layer).glob("*.sql"), None) for layer in LAYERS):
        raise SettingError(f"{name}={str(path)!r}: no models there (no .sql file in its {', '.join(LAYERS)} folders)")
    return path


def _url(env: Mapping[str, str], name: str) -> str | None:
    """An http(s) address, or unset (user trial: 'not a url' was taken, and the alerts' Data Docs button vanished)."""
    text = _text(env, name, None)
    if text is None:
        return None
    try:  # a bad [IPv6 address] or port raises here: refused by name, not a ValueError out of the DAG's parse (review)
        parts = urllib.parse.urlsplit(text)
        usable = (
            parts.scheme.lower() in ("http", "https")
            and bool(parts.hostname)
            and (parts.port is None or parts.port > 0)
            and not {"?", "#"} & set(text)  # review: each page's name went after it (…/?a=1/index.html)
        )
    except ValueError:
        usable = False
    if not usable or text != text.strip() or " " in text:
        raise SettingError(f"{name}={text!r}: expected an http:// or https:// address, without ?query or #fragment")
    return text


def _task_timeout(env: Mapping[str, str], name: str, minutes: float) -> dt.timedelta:
    """At least a second (tests time tasks out after 3 s): 0, or less than a microsecond, is timedelta(0), which Airflow
    takes for "no timeout": every task ran unbounded and publish's lock wait lost its cap (review)."""
    if minutes * 60 < 1:
        raise SettingError(f"{name}={env.get(name)!r}: expected at least 1 second (0.0167 minutes); 0 is not 'none'")
    return dt.timedelta(minutes=minutes)


def parse_day(text: str) -> dt.date:
    """A day written YYYY-MM-DD, else a ValueError saying why: Python's reader also takes 20210210 and 2021-W06, the
    latter as 2021-02-08 (review: accepted as GREENERY_START_DATE, which --date refused)."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text, re.ASCII):
        raise ValueError("expected a date written YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"expected a date YYYY-MM-DD: {exc}") from None


def _date(env: Mapping[str, str], name: str, default: str) -> dt.date:
    text = env.get(name) or default  # empty: the default, as everywhere (review: Compose's ${NAME:-} passes it)
    try:
        return parse_day(text)
    except ValueError as exc:
        raise SettingError(f"{name}={text!r}: {exc}") from None


def _conn_id(env: Mapping[str, str], name: str, default: str | None, off: bool = False) -> str | None:
    """An Airflow connection id by Airflow's own rule (RE_SANITIZE_CONN_ID; review: ' ' and 'None', a template's unset
    value, were taken, the CLI then used its private database, and tasks failed far downstream). ``off``: "none"
    turns the feature off, and "None" is refused as its misspelling."""
    text = _text(env, name, default)
    # "none" turns only the alert off; elsewhere it was looked up as a connection (review)
    none = text is not None and text.lower() == "none" and (text != "none" or not off)
    if text is not None and (not re.fullmatch(r"[\w#!()\-.:/\\]{1,250}", text) or none):
        hint = "none (lower case) turns it off" if off else f"{text!r} is not a connection: leave it unset"
        raise SettingError(
            f"{name}={text!r}: expected an Airflow connection id (letters, digits, _ # ! ( ) - . : / \\; at most"
            f" 250); unset or empty for the default; {hint}"
        )
    return text


def warehouse_named(env: Mapping[str, str] | None = None) -> bool:
    """Whether GREENERY_WAREHOUSE_CONN_ID names a connection (the CLI falls back to its private database when not)."""
    return bool((os.environ if env is None else env).get("GREENERY_WAREHOUSE_CONN_ID"))


def _flag(env: Mapping[str, str], name: str, default: str) -> bool:
    text = env.get(name) or default  # empty: the default
    if text.strip().lower() not in ("true", "false"):
        raise SettingError(f"{name}={text!r}: expected true or false")
    return text.strip().lower() == "true"


def _addresses(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A list of addresses separated by commas or semicolons, each once whatever its case (review: a name listed
    twice got two copies), checked where they are used: a typo here must not stop the DAG from loading; the task
    that mails them fails and says which one is wrong."""
    once: dict[str, str] = {}
    for address in re.split(r"[,;]", env.get(name) or ""):
        if address.strip():
            once.setdefault(address.strip().casefold(), address.strip())
    return tuple(once.values())


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where the local state lives (embedded PostgreSQL, Airflow home, logs): readable before the other settings,
    so a command can start and then report a bad one in a line."""
    env = os.environ if env is None else env
    return Path(env.get("GREENERY_STATE_DIR") or PROJECT_DIR / ".greenery")


def get_lenient(env: Mapping[str, str] | None = None) -> tuple[Settings, tuple[str, ...]]:
    """The settings with each bad value replaced by its default, and what was wrong with each. For the DAG file, the
    failure callbacks' page and the links it carries (links.docs_url) only (review: a bad value on the scheduler made
    the DAG an import error: no run, nobody paged). The DAG loads, and each task that reads the settings with
    :func:`get` fails at once, and pages."""
    env = dict(os.environ if env is None else env)
    problems: list[str] = []
    need_models = True
    while True:
        try:
            return get(env, need_models=need_models), tuple(problems)
        except SettingError as exc:  # its message starts with the variable's name
            name = re.match(r"[^=:\s]*", str(exc))[0]  # GREENERY_Foo too (review)
            problems.append(str(exc))
            # Its default holds no models either (a wheel install: review, the DAG was an import error): it loads
            # without model tasks, and each run's first task fails naming the folder.
            if name == "GREENERY_SQL_DIR" and name not in env:
                need_models = False
            elif name not in env or len(problems) > len(env) + 1:
                raise
            elif name in SAFE_WHEN_BAD and env[name] != SAFE_WHEN_BAD[name]:
                env[name] = SAFE_WHEN_BAD[name]
            else:
                del env[name]


# A bad value of these takes the safe side, not the default (review: GREENERY_ALLOW_BACKFILLS=no turned backfills on
# where the deployment had meant them off: Airflow cannot make one safely on SQLite, and its clean-up deleted runs).
SAFE_WHEN_BAD = {"GREENERY_ALLOW_BACKFILLS": "false"}


# GREENERY_ + these are read by the tests, the benchmark and docker-compose, not here: not refused as misspellings.
# Written without the prefix so that tests/test_docs.py, which keeps the README's table of settings, skips them.
# fmt: off
NOT_SETTINGS = frozenset("GREENERY_" + name for name in (
    "REAL_DATA", "TEST_POSTGRES_URL", "BENCH_POSTGRES_URL", "SEED_SCALE", "STRESS_LOOPS", "PROPERTY_EXAMPLES",
    "SCREENSHOT", "SCREENSHOT_DIR", "DOCS_SCREENSHOT"))
# fmt: on


def setting_names() -> frozenset[str]:
    """The names :func:`get` reads."""
    asked = AskedNames({})
    _read(asked)
    return frozenset(asked.names)


def _refuse_unknown(env: Mapping[str, str], known: set[str]) -> None:
    """Review: a misspelt name (EXPECTATION_DIR for EXPECTATIONS_DIR) was ignored in silence; the default ran."""
    for name in sorted(n for n in env if n.startswith("GREENERY_") and n not in known and n not in NOT_SETTINGS):
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.8)
        hint = f"; did you mean {close[0]}?" if close else " (README: Settings lists them)"
        # Not its value: a password put in a misspelt name (review) would go to the channel with the page.
        raise SettingError(f"{name}: no such setting{hint}")


def get(env: Mapping[str, str] | None = None, *, need_models: bool = True) -> Settings:
    """The settings from ``env`` (default: this process's environment); a GREENERY_* name that is none is refused.
    ``need_models``: GREENERY_SQL_DIR must hold models (get_lenient's last resort only)."""
    env = os.environ if env is None else env
    asked = AskedNames(env)
    settings = _read(asked, need_models)
    _refuse_unknown(env, asked.names)
    timeout = settings.task_timeout  # Airflow's execution_timeout: at least a second (_task_timeout)
    # At most half the timeout: a wait closer to it let the task time out first, naming nobody (review: 6.59 s of a
    # 6.6 s timeout, the time spent waiting for other runs before it not counted).
    if settings.publish_lock_wait > timeout / 2:
        if "GREENERY_PUBLISH_LOCK_WAIT_SECONDS" in env:  # review: a value set was cut to half in silence
            raise SettingError(
                f"GREENERY_PUBLISH_LOCK_WAIT_SECONDS={env['GREENERY_PUBLISH_LOCK_WAIT_SECONDS']!r}: expected at most"
                f" {timeout.total_seconds() / 2:g} (half the task timeout: a wait closer to it let the task time out"
                " first, naming nobody)"
            )
        settings = dataclasses.replace(settings, publish_lock_wait=timeout / 2)  # the default, shortened
    if settings.build_ttl < max(timeout, MIN_BUILD_TTL):
        if "GREENERY_BUILD_TTL_HOURS" not in env:  # a long timeout alone lengthens the default with it
            return dataclasses.replace(settings, build_ttl=max(timeout, MIN_BUILD_TTL))
        raise SettingError(
            f"GREENERY_BUILD_TTL_HOURS={env.get('GREENERY_BUILD_TTL_HOURS')!r}: expected at least"
            f" {max(timeout, MIN_BUILD_TTL) / dt.timedelta(hours=1):g} h (an hour, and the task timeout: a run's"
            " build is idle while one of its tasks runs, and a shorter time let another run drop it mid-run)"
        )
    return settings


def _read(env: Mapping[str, str], need_models: bool = True) -> Settings:
    return Settings(
        warehouse_conn_id=_conn_id(env, "GREENERY_WAREHOUSE_CONN_ID", WAREHOUSE_CONN_ID),
        raw_schema=_schema(env, "GREENERY_RAW_SCHEMA", "raw"),
        sql_dir=_sql_dir(env, "GREENERY_SQL_DIR", INCLUDE_DIR / "sql", need_models),
        expectations_dir=Path(env.get("GREENERY_EXPECTATIONS_DIR") or INCLUDE_DIR / "expectations"),
        asset_authority=_asset_authority(env, "GREENERY_ASSET_AUTHORITY", "warehouse:5432"),
        asset_database=_asset_database(env, "GREENERY_ASSET_DATABASE", "greenery"),
        start_date=_date(env, "GREENERY_START_DATE", "2021-02-10"),
        state_dir=state_dir(env),
        data_docs_base_url=_url(env, "GREENERY_DATA_DOCS_BASE_URL"),
        alert_conn_id=_conn_id(env, "GREENERY_ALERT_CONN_ID", ALERT_CONN_ID, off=True),
        alert_channel=_text(env, "GREENERY_ALERT_CHANNEL", None),
        alert_suppress=dt.timedelta(hours=_number(env, "GREENERY_ALERT_SUPPRESS_HOURS", "24", maximum=YEAR_HOURS)),
        summary_conn_id=_conn_id(env, "GREENERY_SUMMARY_CONN_ID", None),
        summary_channel=_text(env, "GREENERY_SUMMARY_CHANNEL", None),
        digest_email_conn_id=_conn_id(env, "GREENERY_DIGEST_EMAIL_CONN_ID", None),
        digest_email_to=_addresses(env, "GREENERY_DIGEST_EMAIL_TO"),
        retries=_number(env, "GREENERY_RETRIES", "2", int, maximum=100),
        retry_delay=dt.timedelta(seconds=_number(env, "GREENERY_RETRY_DELAY_SECONDS", "60", maximum=DAY_SECONDS)),
        task_timeout=_task_timeout(
            env,
            "GREENERY_TASK_TIMEOUT_MINUTES",
            _number(env, "GREENERY_TASK_TIMEOUT_MINUTES", "60", minimum=-math.inf, maximum=WEEK_MINUTES),  # 1 s: below
        ),
        alert_retries=_number(env, "GREENERY_ALERT_RETRIES", "3", int, maximum=100),
        alert_retry_delay=dt.timedelta(
            seconds=_number(env, "GREENERY_ALERT_RETRY_DELAY_SECONDS", "30", maximum=DAY_SECONDS)
        ),
        build_ttl=dt.timedelta(
            hours=_number(env, "GREENERY_BUILD_TTL_HOURS", "48", minimum=-math.inf, maximum=YEAR_HOURS)
        ),  # its floor (an hour, and the task timeout) is checked in get()
        validation_connections=_number(env, "GREENERY_VALIDATION_CONNECTIONS", "2", int, minimum=1, maximum=64),
        publish_lock_wait=dt.timedelta(
            seconds=_number(env, "GREENERY_PUBLISH_LOCK_WAIT_SECONDS", "300", minimum=1, maximum=DAY_SECONDS)
        ),
        allow_backfills=_flag(env, "GREENERY_ALLOW_BACKFILLS", "true"),
    )


def backfills_set(environ: Mapping[str, str]) -> bool:
    """Whether ``environ`` holds a value of GREENERY_ALLOW_BACKFILLS (empty counts as unset, as everywhere)."""
    return bool(environ.get("GREENERY_ALLOW_BACKFILLS"))


def turn_backfills_off(environ: MutableMapping[str, str]) -> None:
    """Set GREENERY_ALLOW_BACKFILLS=false in ``environ`` unless it holds a value (for dev/local_airflow.py)."""
    if not backfills_set(environ):
        environ["GREENERY_ALLOW_BACKFILLS"] = "false"
