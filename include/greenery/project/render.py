"""Render a model's SQL for one run: refs, sources, the run's interval and time, dbt's incremental idiom."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass

import jinja2

from greenery import config
from greenery.project.models import ENV, Model

# The shop's ids are lowercase UUIDs; staging quarantines rows whose ids are not. The rule is malformed_uuid (faster);
# this pattern is its definition, which tests/test_uuid_rule.py holds it to.
UUID_PATTERN = "'^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'"
# Row rules: a timestamp later than the run's clock plus this skew is in the future (a source clock a
# little ahead is not an error); one more than FAR_PAST before it is a placeholder or a typo.
CLOCK_SKEW = dt.timedelta(hours=1)
FAR_PAST = dt.timedelta(days=365 * 25)


def valid_since(clock: dt.datetime) -> dt.datetime:
    """Rows created before this, by a run with ``clock``, are placeholders the row rules refuse (far_past_timestamp):
    the rules' bound, the events' incremental read and the quarantine rows a run replaces, from one definition."""
    return clock - FAR_PAST


def sql_literal(value: dt.datetime | dt.date) -> str:
    """A typed SQL literal for a date or an aware datetime (values come from Airflow, not from users)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware UTC datetime")
        return f"'{value.astimezone(dt.UTC).isoformat()}'::timestamptz"
    return f"'{value.isoformat()}'::date"


@dataclass(frozen=True)
class Interval:
    """The run's data interval, [start, end), in UTC."""

    start: dt.datetime
    end: dt.datetime

    @classmethod
    def for_day(cls, day: dt.date) -> Interval:
        start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
        return cls(start, start + dt.timedelta(days=1))

    @property
    def day(self) -> dt.date:
        return self.start.astimezone(dt.UTC).date()


def malformed_uuid(column: str) -> str:
    """SQL that is true when ``column`` is not a lowercase UUID, NULL when it is NULL: ``column !~ UUID_PATTERN``.

    A round trip through the uuid type instead of the regex: PostgreSQL's uuid input accepts capitals, braces
    and other hyphen places, and its output is the canonical form, so the text equals its round trip exactly
    when it matches the pattern (tests/test_uuid_rule.py checks both agree). Three times faster than the
    regex; ``stg_postgres__events`` checks five ids per event. ``pg_input_is_valid`` needs PostgreSQL 16.
    For columns only: on a constant, PostgreSQL folds the cast while planning, before the CASE guards it.
    """
    return (
        f"(case when {column} is null then null"
        f" when pg_input_is_valid({column}, 'uuid') then {column}::uuid::text <> {column} else true end)"
    )


def incremental_since(model: Model, interval: Interval) -> dt.datetime:
    """Where an incremental run starts recomputing: the run's day minus the model's lookback."""
    return interval.start - dt.timedelta(days=model.lookback_days)


@functools.lru_cache(maxsize=1024)
def compiled(template: str, env: jinja2.Environment = ENV) -> jinja2.Template:
    """``template`` compiled by ``env`` once per text (models here, suites' strings in checks/suites.py): a build
    renders its model twice (its columns' check, then the build), each validation every suite string, and compiling
    costs more than rendering. Keyed by the text, so an edited file is compiled anew; a compiled template keeps no
    state between renders."""
    return env.from_string(template)


def render(
    model: Model,
    interval: Interval,
    relation: Callable[[str], str],
    raw_schema: str | None = None,
    incremental: bool = False,
    run_time: dt.datetime | None = None,
    published: bool = False,
) -> str:
    """The model's SQL with refs (through ``relation``), sources, the interval and the run's clock filled in.

    ``incremental`` renders the ``{% if is_incremental() %}`` branches (dbt's idiom): the model then
    selects only the rows from ``incremental_since`` on; ``this`` is the published table. ``run_time``
    (default: the end of the interval) is the run's own clock: row rules compare timestamps with
    ``valid_since`` and ``valid_until`` around it, never with now(), so a rerun gives the same answer.
    ``published`` renders the ``{% if is_published() %}`` branches: the model's published table (``this``)
    exists, so the model may compare its rows with what was published (a full refresh too). ``start_date`` is
    GREENERY_START_DATE, the first day a run may build.
    """
    settings = config.get()
    raw_schema = raw_schema or settings.raw_schema
    clock = run_time or interval.end
    return compiled(model.template).render(
        is_incremental=lambda: incremental,
        is_published=lambda: published,
        this=model.relation,
        quarantined=f"{config.QUARANTINE_SCHEMA}.{model.name}",  # the published rows it held back (if quarantine)
        incremental_since=sql_literal(incremental_since(model, interval)),
        ref=relation,
        source=lambda table: f"{raw_schema}.{table}",
        config=lambda **_: "",
        interval_start=sql_literal(interval.start),
        interval_end=sql_literal(interval.end),
        run_date=sql_literal(interval.day),
        start_date=sql_literal(settings.start_date),
        malformed_uuid=malformed_uuid,
        run_time=sql_literal(clock),
        valid_since=sql_literal(valid_since(clock)),
        valid_until=sql_literal(clock + CLOCK_SKEW),
    )
