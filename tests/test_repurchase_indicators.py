"""User behaviour and repurchase indicators on hand-built shops (tests/behavior_data.py).

Every indicator's per-buyer value is checked against a value worked out by hand, the no-leak rule by adding
what happens after the second order (nothing may change), and the statistics (means, medians, Cohen's d,
U, rank-biserial, z, p) against an independent computation in Python: U by counting pairs rather than by
ranks, p from math.erfc rather than the SQL approximation. scipy is not needed.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import os
import statistics
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal

import behavior_data as b
import psycopg
import pytest
from helpers import rows

from greenery import answers, docs, warehouse
from greenery.materialize import build
from greenery.project import models, render

pytestmark = pytest.mark.db

DAY = dt.date(2021, 3, 7)  # every event of the shops is before its end
INDICATORS = list(docs.load()["repurchase_indicators"]["indicators"])


def _build(conn, full_refresh: bool = False) -> None:
    build.build_all(
        conn, models.discover(), render.Interval.for_day(DAY), run_time=b.RUN_TIME, full_refresh=full_refresh
    )


def _built(pg_admin_url, name: str, data: dict):
    """A database of its own with ``data`` loaded and every model built: for the tests that only read it."""
    url = warehouse.create_database(pg_admin_url, f"greenery_test_{os.getpid()}_{name}")
    with pytest.MonkeyPatch.context() as env:
        env.setenv(warehouse.conn_env_var(), warehouse.connection_json(url))
        with psycopg.connect(url, autocommit=True) as conn:
            b.load(conn, data)
            _build(conn)
            yield conn


@pytest.fixture(scope="module")
def shop(pg_admin_url):
    yield from _built(pg_admin_url, "behavior_shop", b.SHOP)


@pytest.fixture
def fresh_shop(warehouse_url):
    """The same shop in the test's own database, for a test that changes it."""
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        b.load(conn, b.SHOP)
        _build(conn)
        yield conn


def window(conn) -> dict[str, dict[str, float | None]]:
    """indicator -> {buyer: value} as repurchase_indicators reads int_user_behavior (through_first_order)."""
    found = rows(conn, "select * from intermediate.int_user_behavior where behavior_scope = 'through_first_order'")
    columns = {
        "minutes_cart_to_checkout": "median_minutes_cart_to_checkout",
        "first_order_total": "avg_order_total",
        "first_order_units": "avg_order_units",
        "first_order_products": "avg_order_products",
        "first_order_used_promo": "promo_order_share",
    }
    out: dict[str, dict[str, float | None]] = {}
    for name in INDICATORS:
        values = {}
        for r in found:
            if name == "first_order_delivered_late":
                value = r["late_deliveries"] / r["deliveries_known"] if r["deliveries_known"] else None
            else:
                value = r[columns.get(name, name)]
            values[r["user_id"]] = None if value is None else float(value)
        out[name] = values
    return out


def indicators(conn) -> dict[str, dict]:
    return {r["indicator"]: r for r in rows(conn, "select * from marts.repurchase_indicators")}


# ------------------------------------------------------------------------------- independent statistics


def mann_whitney(x: list[float], y: list[float]) -> dict:
    """U of x by counting pairs (ties one half), the tie-corrected normal approximation with continuity
    correction, and the two-sided p from math.erfc; rank-biserial and Cohen's d."""
    n1, n0 = len(x), len(y)
    u = sum(1.0 if a > c else 0.5 if a == c else 0.0 for a in x for c in y)
    n = n1 + n0
    counts = [v for v in (sum(1 for w in x + y if w == t) for t in set(x + y))]
    variance = n1 * n0 / 12 * ((n + 1) - sum(t**3 - t for t in counts) / (n * (n - 1))) if n > 1 else 0.0
    out = {"u": u, "r": 2 * u / (n1 * n0) - 1 if n1 and n0 else None, "z": None, "p": None}
    if n1 >= 10 and n0 >= 10 and variance > 0:
        z = math.copysign(max(abs(u - n1 * n0 / 2) - 0.5, 0), u - n1 * n0 / 2) / math.sqrt(variance)
        out |= {"z": z, "p": math.erfc(abs(z) / math.sqrt(2))}
    if n1 >= 2 and n0 >= 2:
        pooled = math.sqrt(((n1 - 1) * statistics.variance(x) + (n0 - 1) * statistics.variance(y)) / (n - 2))
        out["d"] = (statistics.mean(x) - statistics.mean(y)) / pooled if pooled else None
    else:
        out["d"] = None
    return out


def expected_row(values: dict[str, float | None], repeat: set[str]) -> dict:
    x = [v for k, v in values.items() if k in repeat and v is not None]
    y = [v for k, v in values.items() if k not in repeat and v is not None]
    stats = mann_whitney(x, y)
    mean = lambda v: statistics.mean(v) if v else None  # noqa: E731
    median = lambda v: statistics.median(v) if v else None  # noqa: E731
    return {
        "n_repeat": len(x),
        "n_one_time": len(y),
        "mean_repeat": mean(x),
        "mean_one_time": mean(y),
        "median_repeat": median(x),
        "median_one_time": median(y),
        "mean_difference": mean(x) - mean(y) if x and y else None,
        "mean_ratio": mean(x) / mean(y) if x and y and mean(y) else None,
        "cohens_d": stats["d"],
        "rank_biserial": stats["r"],
        "mann_whitney_u": stats["u"] if x or y else None,
        "z_score": stats["z"],
        "p_value": stats["p"],
    }


def rounded(values: dict[str, float | None]) -> dict[str, float | None]:
    """Per-buyer values as int_user_behavior stores them: numeric rounded half up to 4 decimals."""
    return {
        k: None if v is None else float(Decimal(repr(v)).quantize(Decimal("0.0001"), ROUND_HALF_UP))
        for k, v in values.items()
    }


def assert_row_matches(got: dict, expected: dict, name: str) -> None:
    for column, want in expected.items():
        have = got[column]
        if want is None:
            assert have is None, (name, column, have)
        elif column == "p_value":
            # The SQL's erfc (Abramowitz-Stegun 7.1.26) is within 1.5e-7 of math.erfc.
            assert have == pytest.approx(want, abs=2e-7), (name, column)
        else:  # the mart rounds to 4 decimals
            assert float(have) == pytest.approx(want, abs=6e-5), (name, column, have, want)


# ------------------------------------------------------------------------------- known answers


def test_every_indicator_is_documented_and_built(shop):
    assert set(indicators(shop)) == set(INDICATORS) == set(b.WINDOW)


@pytest.mark.parametrize("name", INDICATORS)
def test_each_indicator_per_buyer_up_to_the_first_order(shop, name):
    got = window(shop)[name]
    want = b.WINDOW[name]
    assert set(got) == set(want), "buyers only: u3 never ordered"
    for buyer, value in want.items():
        if value is None:
            assert got[buyer] is None, (name, buyer)
        else:
            assert got[buyer] == pytest.approx(value, abs=6e-5), (name, buyer, got[buyer], value)


@pytest.mark.parametrize("name", INDICATORS)
def test_each_indicator_row_compares_the_hand_values(shop, name):
    row = indicators(shop)[name]
    assert row["is_binary"] is (
        name in {"first_order_used_promo", "first_order_delivered_late", "bought_repeat_favoured_product"}
    )
    assert_row_matches(row, expected_row(rounded(b.WINDOW[name]), b.REPEAT), name)
    # Two buyers a group at most: too few for the normal approximation, and the mart says so.
    assert (row["z_score"], row["p_value"]) == (None, None)
    if name == "bought_repeat_favoured_product":  # never tested: see the next test
        assert row["untested_reason"] == NOT_INDEPENDENT
    else:
        assert row["untested_reason"] == "fewer than 10 buyers with a value in a group"


NOT_INDEPENDENT = "its values come from the other buyers' labels: Mann-Whitney's p would not hold"


def test_a_few_rows_worked_out_completely_by_hand(shop):
    found = indicators(shop)
    # page views: repeat 5 and 1, one-time 3 and 1. Pairs: 5>3, 5>1, 1<3, 1=1 -> U = 2.5, r = 2*2.5/4 - 1.
    pv = found["page_views"]
    assert (float(pv["mean_repeat"]), float(pv["mean_one_time"]), float(pv["mean_ratio"])) == (3, 2, 1.5)
    assert (float(pv["mann_whitney_u"]), float(pv["rank_biserial"])) == (2.5, 0.25)
    # Variances 8 and 2, pooled sqrt((8 + 2) / 2): d = 1 / sqrt(5).
    assert float(pv["cohens_d"]) == pytest.approx(1 / math.sqrt(5), abs=6e-5)
    # Only u4 (late) and u2 (on time) had a known first delivery.
    late = found["first_order_delivered_late"]
    assert (late["n_repeat"], late["n_one_time"], float(late["mean_repeat"]), float(late["mean_one_time"])) == (
        1,
        1,
        1,
        0,
    )
    assert (late["cohens_d"], float(late["rank_biserial"])) == (None, 1)
    # Cart to checkout: u5 had no add-to-cart, so one one-time buyer; mean ratio (6 + 8) / 2 / 8.
    cart = found["minutes_cart_to_checkout"]
    assert (cart["n_one_time"], float(cart["mean_ratio"])) == (1, 0.875)
    # Nobody of the one-time buyers abandoned a cart: no ratio.
    assert found["carts_abandoned"]["mean_ratio"] is None


def test_fact_user_behavior_over_all_history(shop):
    found = {r["user_id"]: r for r in rows(shop, "select * from marts.fact_user_behavior")}
    assert set(found) == {b.U1, b.U2, b.U3, b.U4, b.U5}
    for user, want in b.ALL_HISTORY.items():
        for column, value in want.items():
            have = found[user][column]
            if value is None or isinstance(value, bool):
                assert have is value, (user, column, have)
            else:
                assert float(have) == pytest.approx(value, abs=6e-5), (user, column, have, value)


WINDOW_ROWS = "select * from intermediate.int_user_behavior where behavior_scope = 'through_first_order' order by 2"


def test_nothing_after_the_second_order_changes_the_indicators(fresh_shop):
    """The no-leak rule: events in the second order's session (even those before the first order), sessions
    and a third order after it, a one-time buyer's later sessions. all_history sees them; the window does not."""
    window_before = rows(fresh_shop, WINDOW_ROWS)
    indicators_before = indicators(fresh_shop)
    history_before = {r["user_id"]: r for r in rows(fresh_shop, "select * from marts.fact_user_behavior")}
    later = b.after_the_second_order()
    for table, new in later.items():
        b.load(fresh_shop, {table: b.SHOP[table] + new})
    _build(fresh_shop, full_refresh=True)  # some rows are older than the incremental models' lookback
    assert rows(fresh_shop, WINDOW_ROWS) == window_before
    assert indicators(fresh_shop) == indicators_before
    history = {r["user_id"]: r for r in rows(fresh_shop, "select * from marts.fact_user_behavior")}
    # The rows did land: all history counts them.
    assert (history[b.U1]["orders"], history[b.U1]["page_views"]) == (3, history_before[b.U1]["page_views"] + 2)
    assert history[b.U4]["page_views"] == history_before[b.U4]["page_views"] + 2
    assert history[b.U2]["page_views"] == history_before[b.U2]["page_views"] + 1


def test_a_first_order_without_lines_leaves_its_buyer_out_of_the_line_indicators(fresh_shop):
    """Review: an order whose lines were late or missing in raw (only a warning: published) counted as 0 units, 0
    products and no favoured product; three such one-time buyers on the real data made an indicator "significant"
    (p = 0.028 against 0.278). Such a buyer has no value for them now, and is left out of them only."""
    lines = ("first_order_units", "first_order_products", "bought_repeat_favoured_product")
    before, values_before = indicators(fresh_shop), window(fresh_shop)
    [(first_order,)] = fresh_shop.execute(
        "select first_order_id from intermediate.int_buyers where user_id = %s", (b.U4,)
    ).fetchall()
    assert fresh_shop.execute("delete from raw.order_items where order_id = %s", (first_order,)).rowcount >= 1
    _build(fresh_shop, full_refresh=True)
    after, values = indicators(fresh_shop), window(fresh_shop)
    for name in INDICATORS:
        left_out = name in lines
        assert (values[name][b.U4] is None) is (left_out or values_before[name][b.U4] is None), name
        n = "n_repeat" if values_before[name][b.U4] is not None and _is_repeat(fresh_shop, b.U4) else "n_one_time"
        assert after[name][n] == before[name][n] - (1 if left_out and values_before[name][b.U4] is not None else 0)
    behavior = rows(fresh_shop, "select * from marts.fact_user_behavior where user_id = %s", (b.U4,))[0]
    assert behavior["avg_order_units"] is None or behavior["orders"] > 1  # all history: its other orders' lines
    nobody = rows(fresh_shop, "select bought_repeat_favoured_product from marts.fact_user_behavior where orders = 0")
    assert nobody and all(r["bought_repeat_favoured_product"] is False for r in nobody), "no orders: false, as before"


def test_a_delivered_order_without_its_delivery_time_is_not_known_to_be_late(fresh_shop):
    """Review: an order delivered by its status with no delivered_at (staging warns; published) counted as a late
    delivery once its estimate passed: a missing timestamp read as a late one, in first_order_delivered_late too."""
    before = window(fresh_shop)["first_order_delivered_late"]
    assert before[b.U2] == 0  # o3: delivered before its estimate
    assert fresh_shop.execute("update raw.orders set delivered_at = null where order_id = %s", (b.O3,)).rowcount == 1
    _build(fresh_shop, full_refresh=True)
    assert window(fresh_shop)["first_order_delivered_late"] == {**before, b.U2: None}
    [(known, late)] = fresh_shop.execute(
        "select deliveries_known, late_deliveries from marts.fact_user_behavior where user_id = %s", (b.U2,)
    ).fetchall()
    assert (known, late) == (0, 0)
    [(status,)] = fresh_shop.execute("select status from marts.fact_orders where order_id = %s", (b.O3,)).fetchall()
    assert status == "delivered"  # still delivered, as fact_orders has it; only its punctuality is unknown


def test_buyers_whose_first_orders_have_no_lines_do_not_weigh_in_anyone_elses_favoured_product(
    warehouse_url, real_greenery
):
    """Second review: such a buyer had no value, but still counted in the group sizes the leave-one-out shares are
    taken of, which decide everyone else's. On the real data with 8 one-time buyers' first lines gone, the others'
    flags are exactly those of the shop without those buyers at all (13 of 116 differed)."""
    from greenery.sources import load

    def flags() -> dict[str, bool]:
        found = rows(
            conn,
            "select user_id, bought_repeat_favoured_product as f from intermediate.int_user_behavior"
            " where behavior_scope = 'through_first_order'",
        )
        return {r["user_id"]: r["f"] for r in found}

    day = render.Interval.for_day(dt.date(2021, 2, 12))
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        load.load_dir(conn, real_greenery)
        build.build_all(conn, models.discover(), day, full_refresh=True)
        gone = [
            r["user_id"]
            for r in rows(
                conn, "select user_id from intermediate.int_buyers where not is_repeat_buyer order by user_id limit 8"
            )
        ]
        conn.execute(
            "delete from raw.order_items where order_id in (select first_order_id from"
            " intermediate.int_buyers where user_id = any(%s))",
            (gone,),
        )
        build.build_all(conn, models.discover(), day, full_refresh=True)
        without_lines = {u: f for u, f in flags().items() if u not in gone}
        assert all(flags()[u] is None for u in gone)
        for delete in (
            "delete from raw.events where user_id = any(%s)",
            "delete from raw.order_items where order_id in (select order_id from raw.orders where user_id = any(%s))",
            "delete from raw.orders where user_id = any(%s)",
            "delete from raw.users where user_id = any(%s)",
        ):
            conn.execute(delete, (gone,))
        build.build_all(conn, models.discover(), day, full_refresh=True)
        assert without_lines == flags()


def _is_repeat(conn, user_id: str) -> bool:
    return conn.execute(
        "select is_repeat_buyer from intermediate.int_buyers where user_id = %s", (user_id,)
    ).fetchone()[0]


def test_a_window_ending_at_the_order_row_would_lose_a_checkout_written_after_it(shop):
    """u2's checkout event is 10 s after o3's row: the window takes the later of the two, so the session is a
    checkout (8 minutes from cart), not an abandoned cart."""
    u2 = rows(
        shop,
        "select carts_abandoned, median_minutes_cart_to_checkout from intermediate.int_user_behavior "
        "where behavior_scope = 'through_first_order' and user_id = %s",
        (b.U2,),
    )[0]
    assert (u2["carts_abandoned"], float(u2["median_minutes_cart_to_checkout"])) == (0, 8)


# ------------------------------------------------------------------------------- the statistics

REPEAT_VIEWS = [12, 9, 15, 7, 11, 9, 14, 10, 13, 8, 9, 16]
ONE_TIME_VIEWS = [5, 9, 3, 7, 4, 6, 9, 2, 8, 5]


@pytest.fixture(scope="module")
def stats_shop(pg_admin_url):
    yield from _built(pg_admin_url, "behavior_stats_shop", b.stats_shop(REPEAT_VIEWS, ONE_TIME_VIEWS))


def test_mann_whitney_u_z_p_and_effect_sizes_match_an_independent_computation(stats_shop):
    found = indicators(stats_shop)
    pv = found["page_views"]
    # The page views are the generator's, not the 20 each repeat buyer viewed before the second order.
    repeat = {f"r{i}": float(v) for i, v in enumerate(REPEAT_VIEWS)}
    one_time = {f"o{i}": float(v) for i, v in enumerate(ONE_TIME_VIEWS)}
    want = expected_row(repeat | one_time, set(repeat))
    assert (pv["n_repeat"], pv["n_one_time"]) == (12, 10)
    assert want["p_value"] < 0.01 and pv["untested_reason"] is None
    assert_row_matches(pv, want, "page_views")
    assert float(pv["z_score"]) == pytest.approx(want["z_score"], abs=6e-5)
    # Every indicator, from the buyers' values in the window.
    values = window(stats_shop)
    repeat_buyers = {
        r["user_id"] for r in rows(stats_shop, "select user_id from marts.fact_user_orders where is_repeat_buyer")
    }
    for name in INDICATORS:
        assert_row_matches(found[name], expected_row(values[name], repeat_buyers), name)


def test_an_indicator_where_every_value_is_tied_has_no_p_value(stats_shop):
    found = indicators(stats_shop)
    # One session each, one product viewed each, one unit each: nothing to rank.
    for name in ("sessions", "products_viewed", "first_order_units"):
        assert found[name]["untested_reason"] == "every value is tied", name
        assert (found[name]["z_score"], found[name]["p_value"]) == (None, None)
        assert float(found[name]["rank_biserial"]) == 0


def test_the_normal_approximation_of_erfc_stays_within_its_bound(db):
    """The SQL of the p-value (copied from the model) against math.erfc over the range of z that matters."""
    sql_text = models.discover()["repurchase_indicators"].path.read_text()
    assert "0.3275911" in sql_text and "1.061405429" in sql_text
    worst = 0.0
    for z in [i / 20 for i in range(0, 200)] + [12.0, 30.0, 40.0]:
        x = abs(z) / math.sqrt(2)
        t = 1 / (1 + 0.3275911 * x)
        p = db.execute(
            "select case when %(x)s > 26 then 0::float8 else least(1::float8, %(t)s * (0.254829592 + %(t)s * ("
            "-0.284496736 + %(t)s * (1.421413741 + %(t)s * (-1.453152027 + %(t)s * 1.061405429))))"
            " * exp(-%(x)s * %(x)s)) end",
            {"x": x, "t": t},
        ).fetchone()[0]
        worst = max(worst, abs(p - math.erfc(x)))
    assert worst < 1.5e-7


# ------------------------------------------------------------------------------- in words


def test_answers_name_the_strongest_indicators_with_n_and_p(stats_shop):
    text = "\n".join(answers.format_indicators(answers.read_indicators(stats_shop), "test"))
    pv = indicators(stats_shop)["page_views"]
    ratio = float(pv["mean_repeat"]) / float(pv["mean_one_time"])
    assert f"  - repeat buyers viewed {ratio:.1f}× as many pages as one-time buyers up to their first order" in text
    p = pv["p_value"]
    assert "n 12 vs 10" in text and ("p < 0.001" if p < 0.001 else f"p = {p:.3f}") in text
    assert "untested: every value is tied" in text


def test_answers_say_when_no_indicator_passes(shop):
    text = "\n".join(answers.format_indicators(answers.read_indicators(shop), "test"))
    assert "none: no indicator tells repeat from one-time buyers apart at p < 0.05" in text


# ------------------------------------------------------------------------------- the real data


def _csv(folder, name: str) -> list[dict]:
    with (folder / f"{name}.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def _at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def real_first_order_values(folder) -> tuple[dict[str, dict[str, float | None]], set[str]]:
    """Straight from the CSV files: per buyer the first order's total and the mean session length (minutes)
    up to that order's checkout, leaving out sessions that check out only later orders; and the repeat buyers."""
    orders = defaultdict(list)
    for o in _csv(folder, "orders"):
        if o["user_id"]:
            orders[o["user_id"]].append((_at(o["created_at"]), o["order_id"], float(o["order_total"])))
    first = {user: min(found) for user, found in orders.items()}
    repeat = {user for user, found in orders.items() if len(found) > 1}
    events = [e for e in _csv(folder, "events") if e["event_type"] in ("page_view", "add_to_cart", "checkout")]
    checked_out = defaultdict(list)  # order -> times of its checkout events
    session_orders = defaultdict(set)  # session -> orders it checked out
    for e in events:
        if e["event_type"] == "checkout" and e["order_id"]:
            checked_out[e["order_id"]].append(_at(e["created_at"]))
            session_orders[e["session_id"]].add(e["order_id"])
    sessions = defaultdict(lambda: defaultdict(list))  # user -> session -> event times in the window
    for e in events:
        if e["user_id"] not in first:
            continue
        at, order_id, _ = first[e["user_id"]]
        # The order row and its first checkout event may be a moment apart: the window takes in both.
        window_end = max([at, *sorted(checked_out[order_id])[:1]])
        later_only = session_orders[e["session_id"]] and order_id not in session_orders[e["session_id"]]
        if _at(e["created_at"]) <= window_end and not later_only:
            sessions[e["user_id"]][e["session_id"]].append(_at(e["created_at"]))
    minutes = {
        user: statistics.mean((max(t) - min(t)).total_seconds() / 60 for t in sessions[user].values())
        if sessions[user]
        else None
        for user in first
    }
    totals = {user: total for user, (_, _, total) in first.items()}
    return {"first_order_total": totals, "avg_session_minutes": rounded(minutes)}, repeat


def test_the_strongest_real_indicators_match_a_computation_from_the_csv_files(published_url, real_greenery):
    """On the real data the indicators with the largest |rank-biserial| are the mean session length and the
    first order's total, neither significant: checked against the CSV files, not against the SQL."""
    with psycopg.connect(published_url) as conn:
        found = indicators(conn)
    values, repeat = real_first_order_values(real_greenery)
    assert len(values["first_order_total"]) == 124 and len(repeat) == 99
    strongest = sorted(found.values(), key=lambda r: -abs(r["rank_biserial"] or 0))
    assert [r["indicator"] for r in strongest[:2]] == ["avg_session_minutes", "first_order_total"]
    for name in ("avg_session_minutes", "first_order_total"):
        want = expected_row(values[name], repeat)
        assert_row_matches(found[name], want, name)
        assert 0.05 < want["p_value"] < 0.5, (name, want["p_value"])
