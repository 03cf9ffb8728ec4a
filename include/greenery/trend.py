"""The last 28 days of the business answers up to a run's day, for the stakeholders' digest and its chart.

Repeat rate and session conversion come from ``marts.metrics_daily`` as known at the end of each day.
Orders are the orders *placed* on each UTC day, counted in ``marts.fact_orders``: ``metrics_daily`` has
no daily order count (its figures are cumulative), and an order's ``created_at`` never changes. Every day
of the window is listed, oldest first; a rate is None on a day the pipeline has not run for.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

WINDOW_DAYS = 28

TREND_SQL = """
with

-- Dates plus whole days, never a series of timestamps: PostgreSQL steps those in the session's time zone, and
-- where a clock change skips midnight (Chile, Egypt, Lebanon, Cuba) every later step fell at 01:00 and the run's
-- own day dropped off the end (review: 27 days, the headline rate the day before's).
days as (
    select %(first)s::date + offset_days as day
    from generate_series(0, %(last)s::date - %(first)s::date) as offset_days
),

orders as (
    select
        (created_at at time zone 'UTC')::date as day,
        count(*) as orders
    from marts.fact_orders
    where
        created_at >= %(first)s::date::timestamp at time zone 'UTC'
        and created_at < (%(last)s::date + 1)::timestamp at time zone 'UTC'
    group by 1
)

select
    days.day,
    metrics.repeat_rate,
    metrics.conversion_rate,
    coalesce(orders.orders, 0) as orders
from days
left join marts.metrics_daily as metrics on days.day = metrics.as_of_date
left join orders on days.day = orders.day
order by days.day
"""


@dataclass(frozen=True)
class Point:
    day: dt.date
    repeat_rate: float | None
    conversion_rate: float | None
    orders: int


def read(conn, last_day: dt.date, days: int = WINDOW_DAYS) -> list[Point]:
    """The ``days`` days ending with ``last_day`` (included), oldest first."""
    first = last_day - dt.timedelta(days=days - 1)
    rows = conn.execute(TREND_SQL, {"first": first, "last": last_day}).fetchall()
    return [
        Point(day, None if rr is None else float(rr), None if cr is None else float(cr), int(orders))
        for day, rr, cr, orders in rows
    ]


def as_json(points: list[Point]) -> list[dict[str, Any]]:
    """JSON-able rows (ISO dates) for the message builders."""
    return [{**asdict(p), "day": p.day.isoformat()} for p in points]


def from_json(rows: list[dict[str, Any]]) -> list[Point]:
    return [
        Point(
            dt.date.fromisoformat(str(r["day"])),
            None if r.get("repeat_rate") is None else float(r["repeat_rate"]),
            None if r.get("conversion_rate") is None else float(r["conversion_rate"]),
            int(r.get("orders") or 0),
        )
        for r in rows
    ]
