"""``bought_repeat_favoured_product`` (int_user_behavior) against its definition, computed in Python, on random shops.

The definition (include/sql/marts/_docs.yml): true when an order of the scope held a product that a larger share of
the *other* repeat buyers than of the other one-time buyers had in their first order; the groups hold the buyers
whose first order has lines (one without has no value, and must not weigh in anyone else's shares); an empty group
favours nothing; false without orders, NULL when the scope's orders have no lines. Here the shares are fractions over
the groups written out buyer by buyer; the model instead counts once per product and subtracts the buyer (r*S > s*R).
Hypothesis draws shops of a few users, orders and products, with ties in time (broken by order id), orders without
lines and repeat buyers whose first order has none; the two models the rule reads (int_buyers, int_user_behavior) run
on them as written, in a transaction rolled back after.
"""

from __future__ import annotations

import datetime as dt
from fractions import Fraction

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from greenery.project import models, render

pytestmark = pytest.mark.db

DAY = dt.date(2021, 3, 7)
START = dt.datetime(2021, 3, 1, tzinfo=dt.UTC)
PRODUCTS = ["p0", "p1", "p2", "p3"]
USERS = [f"u{n}" for n in range(6)]

# Only the columns the two models read: int_user_behavior's session part is empty (the rule does not read it).
TABLES = """
create table t.stg_postgres__users (user_id text, created_at timestamptz);
create table t.int_orders (
    order_id text, user_id text, promo_id text, created_at timestamptz, order_total numeric, unit_count bigint,
    item_count bigint, estimated_delivery_at timestamptz, delivered_at timestamptz, status text
);
create table t.int_order_items (order_id text, product_id text);
create table t.int_user_session_behavior (
    behavior_scope text, user_id text, sessions bigint, page_views bigint, products_viewed bigint,
    add_to_carts bigint, carts_abandoned bigint, avg_session_minutes numeric, total_session_minutes numeric,
    median_minutes_cart_to_checkout double precision
);
"""

orders = st.lists(  # per user: (hour of the day it was placed, its products)
    st.tuples(st.integers(0, 3), st.sets(st.sampled_from(PRODUCTS), max_size=3)), max_size=3
)
shops = st.fixed_dictionaries({user: orders for user in USERS})


def expected(shop: dict[str, list]) -> dict[tuple[str, str], bool | None]:
    """(scope, user) -> the indicator, from the definition."""
    placed = {  # user -> [(time, order id, products)], first order first (ties by order id, as int_buyers)
        user: sorted((START + dt.timedelta(hours=hour), f"{user}-o{i}", lines) for i, (hour, lines) in enumerate(o))
        for user, o in shop.items()
    }
    first = {user: o[0][2] for user, o in placed.items() if o}  # buyers -> their first order's products
    repeat = {user for user in first if len(placed[user]) > 1}
    counted = {user for user, lines in first.items() if lines}

    def share(group: set[str], product: str) -> Fraction | None:
        return Fraction(sum(product in first[u] for u in group), len(group)) if group else None

    def favoured(user: str, product: str) -> bool:
        others = counted - {user}
        of_repeat, of_one_time = share(others & repeat, product), share(others - repeat, product)
        return of_repeat is not None and of_one_time is not None and of_repeat > of_one_time

    out: dict[tuple[str, str], bool | None] = {}
    for user in USERS:
        if user not in first:
            out["all_history", user] = False  # no orders: false, not unknown
            continue
        bought = set().union(*(lines for _, _, lines in placed[user]))
        out["all_history", user] = any(favoured(user, p) for p in bought) if bought else None
        out["through_first_order", user] = any(favoured(user, p) for p in first[user]) if first[user] else None
    return out


def built(conn, shop: dict[str, list]) -> dict[tuple[str, str], bool | None]:
    found = models.discover()
    interval = render.Interval.for_day(DAY)
    relation = "t.{}".format
    with conn.transaction(force_rollback=True):
        conn.execute("create schema t")
        conn.execute(TABLES)
        for user, placed in shop.items():
            conn.execute("insert into t.stg_postgres__users values (%s, %s)", (user, START - dt.timedelta(days=1)))
            for i, (hour, lines) in enumerate(placed):
                order_id = f"{user}-o{i}"
                conn.execute(
                    "insert into t.int_orders values (%s, %s, null, %s, 10, %s, %s, null, null, 'preparing')",
                    (order_id, user, START + dt.timedelta(hours=hour), len(lines), len(lines)),
                )
                for product in lines:
                    conn.execute("insert into t.int_order_items values (%s, %s)", (order_id, product))
        conn.execute("create table t.int_buyers as " + render.render(found["int_buyers"], interval, relation))
        got = conn.execute(
            "select behavior_scope, user_id, bought_repeat_favoured_product from ("
            + render.render(found["int_user_behavior"], interval, relation)
            + ") as behavior"
        ).fetchall()
    return {(scope, user): value for scope, user, value in got}


@settings(max_examples=120, deadline=None)
@given(shop=shops)
def test_the_repeat_favoured_product_indicator_follows_its_definition(module_db, shop):
    want = expected(shop)
    for (scope, _), value in want.items():
        event(f"{scope}: {value}")  # --hypothesis-show-statistics: each scope draws true, false and NULL
    assert built(module_db, shop) == want


def test_a_repeat_buyer_whose_first_order_had_no_lines_is_not_taken_out_of_the_repeat_buyers(module_db):
    """Review: u0 repeats, its first order had no lines (so it is in no group), its second holds p0, which u1, the one
    one-time buyer, had first. The other repeat buyers are none: p0 is favoured for nobody. Subtracting u0 from the
    repeat buyers all the same made it 0 * 1 > 1 * -1: true."""
    shop = {user: [] for user in USERS}
    shop.update(u0=[(0, set()), (1, {"p0"})], u1=[(0, {"p0"})])
    got = built(module_db, shop)
    assert got["all_history", "u0"] is False
    assert got["through_first_order", "u0"] is None  # its first order has no lines
    assert got == expected(shop)


def test_a_product_only_the_buyer_had_first_is_not_favoured_by_their_own_label(module_db):
    """Leave-one-out, by hand: u0 (repeat) alone had p0 first; without u0 no repeat buyer had it. u1 (repeat) had
    p0 first too: for u1 the other repeat buyer u0 had it, against none of the one-time buyers (u2, u3)."""
    shop = {user: [] for user in USERS}
    shop.update(
        u0=[(0, {"p0"}), (1, {"p1"})],
        u2=[(0, {"p1"})],
        u3=[(0, {"p2"})],
    )
    assert built(module_db, shop)["through_first_order", "u0"] is False
    shop["u1"] = [(0, {"p0"}), (2, set())]
    got = built(module_db, shop)
    assert got["through_first_order", "u1"] is True
    assert got["through_first_order", "u0"] is True  # now u1 is the other repeat buyer who had p0 first
    assert got == expected(shop)
