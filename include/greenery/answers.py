"""The business answers from the marts, as ``greenery answers`` prints them.

Figures of ``metrics_daily`` are as of the end of one day; the product ranking reads ``fact_product``,
which holds all history as of the latest published run, and says so.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

METRICS_SQL = """
select
    as_of_date,
    users,
    buyers,
    repeat_buyers,
    repeat_rate,
    sessions,
    sessions_with_checkout,
    conversion_rate,
    avg_orders_per_hour,
    avg_sessions_per_hour,
    avg_delivery_days
from marts.metrics_daily
where as_of_date = coalesce(%(day)s, (select max(as_of_date) from marts.metrics_daily))
"""

TOP_PRODUCTS_SQL = """
select product_name, sessions_viewed, sessions_purchased, conversion_rate
from marts.fact_product
order by conversion_rate desc nulls last, product_name
limit 3
"""

LATEST_RUN_SQL = "select max(logical_date) from greenery_audit.publish_log where cardinality(tables) > 0"


class NoAnswersError(LookupError):
    """The marts hold no figures for the day asked (or none at all)."""


def read(conn, day: dt.date | None = None) -> dict[str, Any]:
    """The answers as of ``day`` (default: the latest day in metrics_daily)."""
    with conn.cursor() as cur:
        cur.execute(METRICS_SQL, {"day": day})
        row = cur.fetchone()
        if row is None:
            asked = f"for {day}" if day else "yet"
            raise NoAnswersError(f"marts.metrics_daily has no figures {asked}: run the DAG for that day first")
        metrics = dict(zip([c.name for c in cur.description], row, strict=True))
        cur.execute(TOP_PRODUCTS_SQL)
        top = cur.fetchall()
        latest = cur.execute(LATEST_RUN_SQL).fetchone()[0] if _has_publish_log(cur) else None
    return {"metrics": metrics, "top_products": top, "all_history_as_of": latest}


def _has_publish_log(cur) -> bool:
    return cur.execute("select to_regclass('greenery_audit.publish_log')").fetchone()[0] is not None


def pct(value) -> str:
    return "n/a" if value is None else f"{float(value):.1%}"


def num(value) -> str:
    return "n/a" if value is None else f"{float(value):.2f}"


def format_answers(answers: dict[str, Any]) -> str:
    m = answers["metrics"]
    lines = [
        f"Greenery, as of the end of {m['as_of_date']} (marts.metrics_daily)",
        f"  users                         {m['users']:>10,}",
        f"  buyers (>= 1 order)           {m['buyers']:>10,}",
        f"  repeat buyers (>= 2 orders)   {m['repeat_buyers']:>10,}",
        f"  repeat rate                   {pct(m['repeat_rate']):>10}",
        f"  sessions                      {m['sessions']:>10,}",
        f"  session conversion rate       {pct(m['conversion_rate']):>10}",
        f"  orders per hour (avg)         {num(m['avg_orders_per_hour']):>10}",
        f"  sessions per hour (avg)       {num(m['avg_sessions_per_hour']):>10}",
        f"  days to deliver (avg)         {num(m['avg_delivery_days']):>10}",
    ]
    as_of = answers.get("all_history_as_of")
    label = f"all history, as known to the latest run ({as_of or 'n/a'})"
    if as_of != m["as_of_date"]:
        label += f"; not as of {m['as_of_date']}"
    lines.append(f"Best-converting products (marts.fact_product: {label})")
    for name, viewed, purchased, rate in answers["top_products"]:
        lines.append(f"  {name:<22} {purchased:>6} of {viewed:<6} sessions  {pct(rate)}")
    return "\n".join(lines)
