"""The session funnel: metrics_daily's sessions_with_add_to_cart, fact_funnel_daily, fact_product_funnel_daily.

On the hand-built data of known_data.py (values by hand), with steps taken out of order or after midnight,
and on the real Greenery data: 578 -> 467 -> 361 sessions as of 2021-02-12, and each day's funnel against a
computation straight from the CSV files. The real-data test prints what `greenery answers` prints.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections import defaultdict
from decimal import Decimal

import known_data as k
import psycopg
import pytest
from helpers import rows
from hypothesis import event, given, settings
from hypothesis import strategies as st

from greenery import answers
from greenery.materialize import build
from greenery.project import models, render
from greenery.sources import load as raw

pytestmark = pytest.mark.db

FEB11, FEB12 = dt.date(2021, 2, 11), dt.date(2021, 2, 12)


def _build(conn, days) -> None:
    found = models.discover()
    for day in days:
        build.build_all(conn, found, render.Interval.for_day(day))


def funnel(conn) -> dict[dt.date, tuple]:
    return {
        r["date"]: (
            r["sessions"],
            r["sessions_with_add_to_cart"],
            r["sessions_with_checkout"],
            r["add_to_cart_rate"],
            r["checkout_rate"],
            r["conversion_rate"],
        )
        for r in rows(conn, "select * from marts.fact_funnel_daily")
    }


def product_funnel(conn) -> dict[tuple[dt.date, str], tuple]:
    return {
        (r["date"], r["product_id"]): (r["sessions_viewed"], r["sessions_added_to_cart"], r["sessions_purchased"])
        for r in rows(conn, "select * from marts.fact_product_funnel_daily")
    }


def metrics_funnel(conn) -> dict[dt.date, tuple[int, int, int]]:
    return {
        r["as_of_date"]: (r["sessions"], r["sessions_with_add_to_cart"], r["sessions_with_checkout"])
        for r in rows(conn, "select * from marts.metrics_daily")
    }


@pytest.fixture
def known(db):
    k.load(db)
    return db


def test_the_funnel_on_known_data(known):
    _build(known, (FEB11, FEB12))
    # By the end of 02-11: s1 (cart 10:10). By the end of 02-12: s1..s4, carts in s1 s2 s3, checkouts too.
    assert metrics_funnel(known) == {FEB11: (1, 1, 1), FEB12: (4, 3, 3)}
    one, third = Decimal("1.0000"), Decimal("0.6667")
    # Sessions started on 02-11: s1, through every step. On 02-12: s2 s3 (cart, then checkout) and s4 (views).
    assert funnel(known) == {FEB11: (1, 1, 1, one, one, one), FEB12: (3, 2, 2, third, one, third)}
    # p1 on 02-12: viewed in s2 and s4, added and bought in s2; p2: viewed in s3 and s4 (23:25 UTC), bought in s3.
    assert product_funnel(known) == {
        (FEB11, k.P1): (1, 1, 1),
        (FEB11, k.P2): (1, 1, 1),
        (FEB12, k.P1): (2, 1, 1),
        (FEB12, k.P2): (2, 1, 1),
    }
    rates = rows(
        known, "select * from marts.fact_product_funnel_daily where date = %s and product_id = %s", (FEB12, k.P1)
    )
    assert (rates[0]["view_to_cart_rate"], rates[0]["cart_to_purchase_rate"], rates[0]["view_to_purchase_rate"]) == (
        Decimal("0.5000"),
        one,
        Decimal("0.5000"),
    )


def test_steps_count_in_order_and_by_the_end_of_the_day(known):
    """A step before the one it follows, or after midnight, does not count in the daily funnels; metrics_daily
    counts each step on its own (all history as of the day), so it counts those."""
    events = [dict(e) for e in k.RAW["events"]]
    assert events[11]["event_id"] == k.uid(6, 12)  # s3 adds p2 at 10:52 and checks out at 10:55:
    events[11]["created_at"] = "2021-02-12T10:58:00Z"  # the add comes after the checkout
    extra = [
        # s4 adds p1 at 11:10, before viewing it at 11:20; and p2 at 00:10, after the day's end.
        k._event(90, k.S4, k.U3, "2021-02-12T11:10:00Z", "add_to_cart", product=k.P1),
        k._event(91, k.S4, k.U3, "2021-02-13T00:10:00Z", "add_to_cart", product=k.P2),
    ]
    raw.load_rows(known, "events", events + extra)
    _build(known, (FEB12,))
    # Carts: s2, s3 (10:58), s4 (11:10); checkouts after a cart: s2 only (s3 checked out before its cart).
    assert funnel(known)[FEB12][:3] == (3, 3, 1)
    assert metrics_funnel(known)[FEB12] == (4, 4, 3)
    assert product_funnel(known)[(FEB12, k.P1)] == (2, 1, 1)  # s4's add of p1 came before its view
    assert product_funnel(known)[(FEB12, k.P2)] == (2, 1, 0)  # s3 bought p2 before adding it; s4 added after midnight


# ------------------------------------------------------------------------------------------ real data


def _at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def funnel_from_csv(folder) -> tuple[dict, dict]:
    """:func:`funnels_of` the real data's CSV files."""
    with (folder / "events.csv").open(newline="") as handle:
        events = [{**e, "created_at": _at(e["created_at"])} for e in csv.DictReader(handle)]
    with (folder / "order_items.csv").open(newline="") as handle:
        items = defaultdict(list)
        for item in csv.DictReader(handle):
            items[item["order_id"]].append(item["product_id"])
    return funnels_of(events, items)


def funnels_of(events: list[dict], items: dict[str, list[str]]) -> tuple[dict, dict]:
    """Per start day: (sessions, with an add-to-cart, with a checkout after it) and per (day, product):
    (viewed, added after the view, bought after the add), steps by the end of the start day. Written from the
    definition, event by event: the models count per session in one pass (tests below)."""
    sessions = defaultdict(list)
    for e in events:
        sessions[e["session_id"]].append((e["created_at"], e))
    days: dict = defaultdict(lambda: [0, 0, 0])
    products: dict = defaultdict(lambda: [0, 0, 0])
    for found in sessions.values():
        start = min(at for at, _ in found)
        day = start.date()
        end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
        steps = [(at, e) for at, e in found if at < end]
        carts = [at for at, e in steps if e["event_type"] == "add_to_cart"]
        checkouts = [at for at, e in steps if e["event_type"] == "checkout"]
        days[day][0] += 1
        days[day][1] += bool(carts)
        days[day][2] += bool(carts and any(at >= min(carts) for at in checkouts))
        touched = defaultdict(lambda: {"page_view": [], "add_to_cart": [], "purchase": []})
        for at, e in steps:
            if e["product_id"]:
                touched[e["product_id"]][e["event_type"]].append(at)
            elif e["event_type"] == "checkout":
                for product in items[e["order_id"]]:
                    touched[product]["purchase"].append(at)
        for product, when in touched.items():
            if not when["page_view"]:
                continue
            added = [at for at in when["add_to_cart"] if at >= min(when["page_view"])]
            bought = added and [at for at in when["purchase"] if at >= min(added)]
            counts = products[(day, product)]
            counts[0] += 1
            counts[1] += bool(added)
            counts[2] += bool(bought)
    return {d: tuple(v) for d, v in days.items()}, {key: tuple(v) for key, v in products.items()}


def test_the_real_funnel_is_578_467_361_and_each_day_matches_the_raw_events(db, real_greenery):
    raw.load_dir(db, real_greenery)
    days = (dt.date(2021, 2, 10), FEB11, FEB12)
    _build(db, days)
    # All history as of the end of 2021-02-12 (every session of the data).
    assert metrics_funnel(db)[FEB12] == (578, 467, 361)
    daily, per_product = funnel_from_csv(real_greenery)
    assert {d: v[:3] for d, v in funnel(db).items()} == {d: daily.get(d, (0, 0, 0)) for d in days}
    assert product_funnel(db) == {key: v for key, v in per_product.items() if key[0] in days}
    # Two sessions started on 02-09, before the first day built: the days add up to all but those.
    assert sum(v[0] for v in funnel(db).values()) == 578 - daily[dt.date(2021, 2, 9)][0]


def test_greenery_answers_on_the_real_data(published_url):
    with psycopg.connect(published_url) as conn:
        found = answers.read(conn, FEB12)
    text = answers.format_answers(found)
    print("\n" + text)  # the table the issue asks to see: pytest -s shows it
    assert "  sessions                             578" in text
    assert "  with an add-to-cart                  467   80.8% of sessions" in text
    assert (
        "  with a checkout                      361   77.3% as many as with an add-to-cart, 62.5% of sessions" in text
    )
    indicators = {r["indicator"]: r for r in found["indicators"]}
    assert len(indicators) == 15
    assert (indicators["page_views"]["n_repeat"], indicators["page_views"]["n_one_time"]) == (99, 25)
    # Most repeat buyers ordered again before their first order was due: too few known deliveries to test.
    assert indicators["first_order_delivered_late"]["untested_reason"] == "fewer than 10 buyers with a value in a group"
    # Review: its values come from the other buyers' labels; on 2,000 shuffles of the real labels its p passed 0.05
    # in 16 % of them. Its shares stay (99 and 25 buyers, values apart), its p does not.
    favoured = indicators["bought_repeat_favoured_product"]
    assert (favoured["n_repeat"], favoured["n_one_time"], favoured["p_value"]) == (99, 25, None), favoured
    assert favoured["untested_reason"].startswith("its values come from the other buyers' labels")
    tested = [r for r in indicators.values() if r["p_value"] is not None]
    assert len(tested) == 13  # and bought_repeat_favoured_product: its values come from the others' labels
    # On this data nothing a buyer did up to the first order tells repeat from one-time buyers.
    assert min(r["p_value"] for r in tested) > answers.SIGNIFICANCE
    assert "  none: no indicator tells repeat from one-time buyers apart at p < 0.05" in text


def test_more_checkouts_than_carts_is_not_shown_as_a_conversion_above_100_percent():
    """Review: with a day's add-to-cart events missing, the funnel printed "361  124.5% of those with an add-to-cart":
    each step is counted on its own, so that is no conversion rate."""
    day = {"as_of_date": FEB12, "sessions": 578, "sessions_with_add_to_cart": 290, "sessions_with_checkout": 361}
    lines = answers.format_funnel(day)
    assert lines[-1].endswith("361   71 more than with an add-to-cart (add-to-cart events missing?), 62.5% of sessions")
    assert "%" not in lines[-1].split("(")[0]


def test_the_checkout_step_is_a_ratio_of_counts_not_a_share_of_the_carts():
    """Review: 5 checkouts beside 5 add-to-carts, 2 of the checkouts without one, printed "100.0% of those with an
    add-to-cart" where 60 % of them checked out: each step is counted on its own, so it says what it is."""
    day = {"as_of_date": FEB12, "sessions": 10, "sessions_with_add_to_cart": 5, "sessions_with_checkout": 5}
    assert (
        answers.format_funnel(day)[-1].split(None, 4)[-1] == "100.0% as many as with an add-to-cart, 50.0% of sessions"
    )
    assert not any("of those with" in line for line in answers.format_funnel(day))


def test_a_day_built_before_a_column_existed_prints_n_a_and_how_to_fill_it_not_a_traceback():
    """Review: a column added to a daily model is NULL on the days built before it (README); `greenery answers` for
    such a day ended in a TypeError traceback, nothing printed."""
    day = {"as_of_date": FEB12, "sessions": 578, "sessions_with_add_to_cart": None, "sessions_with_checkout": 361}
    lines = answers.format_funnel(day)
    assert lines[2].split() == ["with", "an", "add-to-cart", "n/a", "n/a", "of", "sessions"], lines
    said = f"  n/a: not built on {FEB12} (its run is older than the column); running the day again fills it"
    assert lines[-1] == said
    assert (answers.count(None), answers.count(1234)) == ("n/a", "1,234")  # the other counts of `greenery answers`


# ------------------------------------------------------------------------------------------ the rule, on random days

# Times around the day's edges, few enough that events tie: a step at the same moment as the one it follows counts.
AT = [
    dt.datetime.combine(FEB12, dt.time(), tzinfo=dt.UTC) + dt.timedelta(minutes=m)
    for m in (-90, -1, 0, 1, 30, 1439, 1440)
]
PRODUCTS = ["p0", "p1", "p2"]
STEPS = st.one_of(
    st.tuples(st.sampled_from(["page_view", "add_to_cart"]), st.sampled_from(PRODUCTS)),
    st.tuples(st.just("checkout"), st.sets(st.sampled_from(PRODUCTS), max_size=2)),  # the products of its order
)
# Per session: its events, (time, step).
DAYS = st.lists(st.lists(st.tuples(st.sampled_from(AT), STEPS), min_size=1, max_size=6), max_size=5)


def _events(sessions: list[list]) -> tuple[list[dict], dict[str, list[str]]]:
    events, items = [], {}
    for s, steps in enumerate(sessions):
        for i, (at, (kind, what)) in enumerate(steps):
            row = {"event_id": f"e{s}-{i}", "session_id": f"s{s}", "created_at": at, "event_type": kind}
            row.update(product_id=None, order_id=None)
            if kind == "checkout":
                row["order_id"] = f"o{s}-{i}"
                items[row["order_id"]] = sorted(what)
            else:
                row["product_id"] = what
            events.append(row)
    return events, items


def built_funnels(conn, events: list[dict], items: dict[str, list[str]]) -> tuple[tuple, dict]:
    """FEB12's row of fact_funnel_daily and fact_product_funnel_daily's rows, the models (and the two they read) run on
    ``events`` as written, in a transaction rolled back after."""
    found = models.discover()
    interval = render.Interval.for_day(FEB12)
    relation = "t.{}".format
    with conn.transaction(force_rollback=True):
        conn.execute("create schema t")
        conn.execute(
            "create table t.stg_postgres__events (event_id text, session_id text, user_id text, page_url text,"
            " created_at timestamptz, event_type text, order_id text, product_id text)"
        )
        conn.execute("create table t.stg_postgres__order_items (order_id text, product_id text, quantity integer)")
        for e in events:
            conn.execute(
                "insert into t.stg_postgres__events values (%s, %s, 'u', null, %s, %s, %s, %s)",
                (e["event_id"], e["session_id"], e["created_at"], e["event_type"], e["order_id"], e["product_id"]),
            )
        for order_id, products in items.items():
            for product in products:
                conn.execute("insert into t.stg_postgres__order_items values (%s, %s, 1)", (order_id, product))
        for upstream in ("int_user_sessions", "int_product_events"):
            conn.execute(f"create table t.{upstream} as " + render.render(found[upstream], interval, relation))
        daily = conn.execute(
            "select sessions, sessions_with_add_to_cart, sessions_with_checkout from ("
            + render.render(found["fact_funnel_daily"], interval, relation)
            + ") as funnel"
        ).fetchone()
        per_product = conn.execute(
            "select product_id, sessions_viewed, sessions_added_to_cart, sessions_purchased from ("
            + render.render(found["fact_product_funnel_daily"], interval, relation)
            + ") as funnel"
        ).fetchall()
    return daily, {(FEB12, product): tuple(counts) for product, *counts in per_product}


@settings(max_examples=150, deadline=None)
@given(sessions=DAYS)
def test_both_daily_funnels_follow_their_definition_event_by_event(module_db, sessions):
    """The models as a full build (or a first run) runs them, on one table of events: a daily run reads the same SQL
    through merged views, whose rows the incremental tests compare with full refreshes (test_incremental.py)."""
    events, items = _events(sessions)
    daily, per_product = funnels_of(events, items)
    want_daily = daily.get(FEB12, (0, 0, 0))
    # --hypothesis-show-statistics: each step is reached and missed
    event(f"sessions with a checkout after a cart: {want_daily[2]}")
    event(f"products bought after a cart: {sum(c[2] for k, c in per_product.items() if k[0] == FEB12)}")
    assert built_funnels(module_db, events, items) == (
        want_daily,
        {key: counts for key, counts in per_product.items() if key[0] == FEB12},
    )
