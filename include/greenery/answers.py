"""The business answers from the marts, as ``greenery answers`` prints them.

Figures of ``metrics_daily`` (the session funnel among them) are as of the end of one day; the product
ranking reads ``fact_product`` and the repurchase indicators read ``repurchase_indicators``, which hold
all history as of the latest publish that wrote each, and say which. The strongest indicators are put in
words from the ``says`` phrases of include/sql/marts/_docs.yml: only those with p below ``SIGNIFICANCE``,
ranked by the size of their rank-biserial correlation (the effect size of the test that gave the p-value).
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from typing import Any

import psycopg
import psycopg.sql

from greenery import audit, config
from greenery.printable import printable

METRICS_SQL = """
select
    as_of_date,
    users,
    buyers,
    repeat_buyers,
    repeat_rate,
    sessions,
    sessions_with_add_to_cart,
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

INDICATORS_SQL = """
select
    indicator,
    is_binary,
    n_repeat,
    n_one_time,
    mean_repeat,
    mean_one_time,
    median_repeat,
    median_one_time,
    mean_ratio,
    cohens_d,
    rank_biserial,
    p_value,
    untested_reason
from marts.repurchase_indicators
order by abs(rank_biserial) desc nulls last, indicator
"""

SIGNIFICANCE = 0.05
STRONGEST = 3

# The newest publish that wrote the table, not the latest day published: a whole-history table is what its last
# publish made (a backfill of an older day, published after, rebuilt it: review); nor the newest publish of any
# table (a model cleared with its downstream tasks publishes those alone; the table was made before: review).
TABLE_PUBLISHED_SQL = (
    "select run_id, logical_date, published_at from greenery_audit.publish_log where %(table)s = any(tables)"
    " order by published_at desc limit 1"
)
# The publish that made the day's row of metrics_daily, and a later publish of an earlier day (raw read again for
# the days before: the day's row was made on older raw, review).
DAY_PUBLISHED_SQL = (
    "select run_id, logical_date, published_at from greenery_audit.publish_log"
    " where logical_date = %(day)s and 'marts.metrics_daily' = any(tables) order by published_at desc limit 1"
)
EARLIER_DAY_AFTER_SQL = (  # "again": that day had been published before this day's row was (a first backfill is not)
    "select l.run_id, l.logical_date, l.published_at from greenery_audit.publish_log as l"
    " where l.logical_date < %(day)s and l.published_at > %(at)s and cardinality(l.tables) > 0"
    " and exists (select from greenery_audit.publish_log as e where e.logical_date = l.logical_date"
    " and e.published_at < %(at)s and cardinality(e.tables) > 0)"
    " order by l.published_at desc limit 1"
)


class NoAnswersError(LookupError):
    """The marts hold no figures for the day asked (or none at all)."""


def read(conn, day: dt.date | None = None) -> dict[str, Any]:
    """The answers as of ``day`` (default: the latest day in metrics_daily)."""
    try:
        return _read(conn, day)
    except psycopg.errors.UndefinedTable as exc:  # review: a mart dropped by hand ended in a traceback
        raise NoAnswersError(
            f"{exc.diag.message_primary}: the marts are incomplete; run the DAG for the latest day to publish them"
        ) from None
    except psycopg.errors.InsufficientPrivilege as exc:  # review: a role that cannot read the marts: a traceback
        role = psycopg.sql.Identifier(conn.info.user).as_string(conn)
        raise NoAnswersError(
            f"{exc.diag.message_primary} (role {role}): the answers read the marts and greenery_audit.publish_log;"
            f" grant usage on schema marts, greenery_audit to {role};"
            f" grant select on all tables in schema marts, greenery_audit to {role}"
        ) from None


def _read(conn, day: dt.date | None) -> dict[str, Any]:
    with conn.cursor() as cur:
        if not _exists(cur, "marts.metrics_daily"):
            raise NoAnswersError("marts.metrics_daily does not exist: nothing was published yet; run the DAG first")
        cur.execute(METRICS_SQL, {"day": day})
        row = cur.fetchone()
        if row is None:
            asked = f"for {day}" if day else "yet"
            todo = "run the DAG for that day first"
            if day and day < (start := config.get().start_date):  # review: `run` refuses such a day as it stands
                todo = f"{day} is before GREENERY_START_DATE ({start}): set it to {day} or earlier, then run that day"
                if (first := _first_order_day(cur)) is not None and day < first:  # review: advice that fails
                    todo = f"raw has no orders before {first}: there is no day {day} to run"
            elif day and (last := _raw_day(cur, "events", "max")) is not None and day > last:  # user trial: same
                todo = f"raw has no events after {last}: load {day}'s data, then run that day"
            raise NoAnswersError(f"marts.metrics_daily has no figures {asked}: {todo}")
        metrics = dict(zip([c.name for c in cur.description], row, strict=True))
        cur.execute(TOP_PRODUCTS_SQL)
        top = cur.fetchall()
        ranking = indicators = day_run = earlier_after = None
        if _exists(cur, "greenery_audit.publish_log"):
            ranking = cur.execute(TABLE_PUBLISHED_SQL, {"table": "marts.fact_product"}).fetchone()
            indicators = cur.execute(TABLE_PUBLISHED_SQL, {"table": "marts.repurchase_indicators"}).fetchone()
            day_run = cur.execute(DAY_PUBLISHED_SQL, {"day": metrics["as_of_date"]}).fetchone()
            if day_run is not None:
                earlier_after = cur.execute(EARLIER_DAY_AFTER_SQL, {"day": day_run[1], "at": day_run[2]}).fetchone()
    return {
        "metrics": metrics,
        "top_products": top,
        "all_history_as_of": ranking[1] if ranking else None,  # the product ranking's (marts.fact_product)
        "all_history_run": _publish(ranking),
        "indicators_run": _publish(indicators),  # the publish that wrote marts.repurchase_indicators
        "day_run": _publish(day_run),
        "earlier_day_published_after": _publish(earlier_after),
        "indicators": read_indicators(conn),
    }


def _publish(row) -> dict[str, Any] | None:
    return dict(zip(("run_id", "day", "published_at"), row, strict=True)) if row else None


def _when(publish: dict[str, Any]) -> str:
    return audit.utc_minute(publish["published_at"])


def read_indicators(conn) -> list[dict]:
    """The rows of repurchase_indicators, largest |rank-biserial| first. Missing, it is an incomplete warehouse, as a
    missing fact_product is (review: "not built yet" and exit 0, where fact_product missing exits 2)."""
    with conn.cursor() as cur:
        cur.execute(INDICATORS_SQL)
        return [dict(zip([c.name for c in cur.description], r, strict=True)) for r in cur.fetchall()]


NAME_COLUMNS = 22  # the product column of the answers' table; a longer name has a line of its own above its figures


def _columns(text: str) -> int:
    """How many terminal columns ``text`` takes: East Asian wide characters and most emoji two, marks none."""
    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text
    )


def before_start(day: dt.date, start: dt.date) -> str:
    """Why `greenery run` refuses a day before GREENERY_START_DATE, and what to do: move the setting, unless raw has
    no orders that early (user trial: that advice, followed, failed its source check and paged on-call)."""
    from greenery import warehouse

    said = f"{day} is before the pipeline's start date {start}: its run would build nothing."
    try:
        with warehouse.connect() as conn, conn.cursor() as cur:
            first = _first_order_day(cur)
    except Exception:  # not readable (a warehouse down, a setting wrong): the advice about the setting stands
        first = None
    if first is not None and day < first:
        also = f" To backfill from {first}, set GREENERY_START_DATE={first} and run that day." if first < start else ""
        return f"{said} raw has no orders before {first}: there is no day {day} to run.{also}"
    return f"{said} To backfill older history, set GREENERY_START_DATE={day} (or earlier) and run again."


def _first_order_day(cur) -> dt.date | None:
    """The day of raw's first order (None without orders, or without the table)."""
    return _raw_day(cur, "orders", "min")


def _raw_day(cur, table: str, which: str) -> dt.date | None:
    """The day of raw ``table``'s first (``which`` "min") or last ("max") row (None without rows or table)."""
    schema = config.get().raw_schema
    if not _exists(cur, f"{schema}.{table}"):
        return None
    query = psycopg.sql.SQL("select {}(created_at) from {}").format(
        psycopg.sql.SQL(which), psycopg.sql.Identifier(schema, table)
    )
    found = cur.execute(query).fetchone()[0]
    # A UTC day, whatever the session's time zone (review); a time without a zone is UTC, as the models read it.
    return None if found is None else (found.astimezone(dt.UTC) if found.tzinfo else found).date()


def _exists(cur, relation: str) -> bool:
    return cur.execute("select to_regclass(%s)", (relation,)).fetchone()[0] is not None


def pct(value) -> str:
    return "n/a" if value is None else f"{float(value):.1%}"


def num(value) -> str:
    return "n/a" if value is None else f"{float(value):.2f}"


def count(value) -> str:
    """A count, or n/a: a column added to a daily model is NULL on the days built before it (review: a traceback)."""
    return "n/a" if value is None else f"{int(value):,}"


def format_answers(answers: dict[str, Any]) -> str:
    m = answers["metrics"]
    lines = [
        f"Greenery, as of the end of {m['as_of_date']} (marts.metrics_daily)",
        f"  users                         {count(m['users']):>10}",
        f"  buyers (>= 1 order)           {count(m['buyers']):>10}",
        f"  repeat buyers (>= 2 orders)   {count(m['repeat_buyers']):>10}",
        f"  repeat rate                   {pct(m['repeat_rate']):>10}",
        f"  sessions                      {count(m['sessions']):>10}",
        f"  session conversion rate       {pct(m['conversion_rate']):>10}",
        f"  orders per hour (avg)         {num(m['avg_orders_per_hour']):>10}",
        f"  sessions per hour (avg)       {num(m['avg_sessions_per_hour']):>10}",
        f"  days to deliver (avg)         {num(m['avg_delivery_days']):>10}",
    ]
    if made := answers.get("day_run"):
        lines.insert(1, f"  (published by run {printable(made['run_id'])}, {_when(made)})")
    if later := answers.get("earlier_day_published_after"):
        # Review: after a rerun of an earlier day on changed raw, the latest day's figures were the older raw's.
        lines.insert(
            2,
            f"  note: {later['day']} was published again after it ({_when(later)}, run"
            f" {printable(later['run_id'])}): these figures predate that; run {m['as_of_date']} again to count what it"
            " changed",
        )
    lines += format_funnel(m)
    # Each all-history table names the publish that last wrote it: they may be of different runs (review).
    lines.append(f"Best-converting products (marts.fact_product: {_label(answers.get('all_history_run'), m)})")
    for name, viewed, purchased, rate in answers["top_products"]:  # a name is raw data: shown, never obeyed (review)
        shown = printable(name)
        if _columns(shown) > NAME_COLUMNS:  # user trial: a 300-character name pushed its figures off the table
            lines.append(f"  {shown}")
            shown = ""
        padding = " " * (NAME_COLUMNS - _columns(shown))
        lines.append(f"  {shown}{padding} {purchased:>6} of {viewed:<6} sessions  {pct(rate)}")
    lines += format_indicators(answers.get("indicators"), _label(answers.get("indicators_run"), m))
    return "\n".join(lines)


def _label(run: dict[str, Any] | None, m: dict[str, Any]) -> str:
    """An all-history table's label: the publish that last wrote it, and whether its day is not the figures' day."""
    label = "all history, as the last publish read raw"
    if run:
        label += f": run {printable(run['run_id'])} of {run['day']}, {_when(run)}"
    if run and run["day"] != m["as_of_date"]:
        label += f"; not as of {m['as_of_date']}"
    return label


def _ratio(part, whole) -> str:
    return "n/a" if part is None or not whole else f"{part / whole:.1%}"


def format_funnel(m: dict[str, Any]) -> list[str]:
    """The session funnel as of the day: each step counted on its own, with its conversion from the step before."""
    sessions, carts, checkouts = m["sessions"], m["sessions_with_add_to_cart"], m["sessions_with_checkout"]
    # Each step is counted on its own (a session may check out without an add-to-cart): a ratio of counts, not the
    # share of carts that checked out (review: "100.0% of those with an add-to-cart" where 60 % of them had).
    step = f"{_ratio(checkouts, carts)} as many as with an add-to-cart"
    if checkouts is not None and carts is not None and checkouts > carts:
        # Each step is counted on its own: more checkouts than carts is no conversion above 100 % (review).
        step = f"{checkouts - carts:,} more than with an add-to-cart (add-to-cart events missing?)"
    lines = [
        f"Session funnel (all sessions by the end of {m['as_of_date']}; per day: marts.fact_funnel_daily)",
        f"  sessions                      {count(sessions):>10}",
        f"  with an add-to-cart           {count(carts):>10}   {_ratio(carts, sessions)} of sessions",
        f"  with a checkout               {count(checkouts):>10}   {step}, {_ratio(checkouts, sessions)} of sessions",
    ]
    if None in (sessions, carts, checkouts):
        day = m["as_of_date"]
        lines.append(f"  n/a: not built on {day} (its run is older than the column); running the day again fills it")
    return lines


def _p(p) -> str:
    if p is None:
        return "untested"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _value(value, binary: bool) -> str:
    if value is None:
        return "n/a"
    return f"{float(value):.0%}" if binary else f"{float(value):.2f}"


def format_indicators(rows: list[dict], label: str) -> list[str]:
    """The indicator table, then the strongest indicators with p below SIGNIFICANCE in words."""
    head = f"What repeat buyers did differently up to their first order (marts.repurchase_indicators: {label})"
    if not rows:
        return [head, "  no buyers yet"]
    lines = [
        head,
        f"  {'indicator':<31} {'repeat: n':>9} {'mean':>8} {'median':>8}   {'one-time: n':>11} {'mean':>8}"
        f" {'median':>8}  {'ratio':>6} {'d':>6} {'r':>6}  p",
    ]
    for r in rows:
        b = r["is_binary"]
        ratio = "n/a" if r["mean_ratio"] is None else f"{float(r['mean_ratio']):.2f}"
        lines.append(
            f"  {r['indicator']:<31} {r['n_repeat']:>9} {_value(r['mean_repeat'], b):>8}"
            f" {_value(r['median_repeat'], b):>8}"
            f"   {r['n_one_time']:>11} {_value(r['mean_one_time'], b):>8} {_value(r['median_one_time'], b):>8}"
            f"  {ratio:>6} {_num(r['cohens_d']):>6} {_num(r['rank_biserial']):>6}  "
            + (_p(r["p_value"]) if r["p_value"] is not None else f"untested: {r['untested_reason']}")
        )
    lines.append(
        "  ratio: mean repeat / mean one-time; d: Cohen's d; r: rank-biserial (> 0: repeat buyers higher);"
        " p: two-sided Mann-Whitney U"
    )
    lines += strongest(rows)
    return lines


def _num(value) -> str:
    return "n/a" if value is None else f"{float(value):+.2f}"


def strongest(rows: list[dict]) -> list[str]:
    """The indicators with p below SIGNIFICANCE, largest |rank-biserial| first, each in a sentence."""
    from greenery import docs

    says = {name: d["says"] for name, d in docs.load()["repurchase_indicators"]["indicators"].items()}
    tested = [r for r in rows if r["p_value"] is not None]
    found = sorted(
        (r for r in tested if r["p_value"] < SIGNIFICANCE), key=lambda r: (-abs(r["rank_biserial"]), r["indicator"])
    )
    lines = [
        f"Strongest indicators (p < {SIGNIFICANCE}, by |r|; {len(tested)} tested, so about"
        f" {len(tested) * SIGNIFICANCE:.1f} would pass by chance if none mattered)"
    ]
    if not found:
        none = f"  none: no indicator tells repeat from one-time buyers apart at p < {SIGNIFICANCE}"
        best = max(tested, key=lambda r: abs(r["rank_biserial"]), default=None)
        if best is not None:
            none += f" (largest effect: {best['indicator']}, r {_num(best['rank_biserial'])}, {_p(best['p_value'])})"
        lines.append(none)
    lines += [f"  - {sentence(r, says.get(r['indicator']))}" for r in found[:STRONGEST]]
    return lines


def sentence(r: dict, says: str | None) -> str:
    """One indicator in words: who is higher (by the rank-based effect, as the test), by how much, n and p."""
    stats = f"n {r['n_repeat']} vs {r['n_one_time']}, r {_num(r['rank_biserial'])}, {_p(r['p_value'])}"
    m1, m0 = r["mean_repeat"], r["mean_one_time"]
    if r["is_binary"]:
        return f"{_value(m1, True)} of repeat buyers vs {_value(m0, True)} of one-time buyers {says} ({stats})"
    repeat_higher = r["rank_biserial"] > 0
    subject, other = ("repeat buyers", "one-time buyers") if repeat_higher else ("one-time buyers", "repeat buyers")
    figures = (
        f"repeat vs one-time: mean {_value(m1, False)} vs {_value(m0, False)},"
        f" median {_value(r['median_repeat'], False)} vs {_value(r['median_one_time'], False)}; {stats}"
    )
    # The ratio of the higher group's mean (else median) to the other's, when it points the way the ranks do.
    for hi, lo in ((m1, m0), (r["median_repeat"], r["median_one_time"])):
        hi, lo = (hi, lo) if repeat_higher else (lo, hi)
        if says and hi is not None and lo and float(hi) / float(lo) > 1:
            ratio = f"{float(hi) / float(lo):.1f}×"
            return f"{subject} {says.format(ratio=ratio, other=other)} up to their first order ({figures})"
    return f"{subject} rank higher on {r['indicator']} up to their first order ({figures})"
