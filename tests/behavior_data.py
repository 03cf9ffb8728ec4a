"""Hand-built shops for the user-behaviour marts, small enough to work every value out by hand.

``SHOP`` has five users on 2021-03-01 (D) and after, the run's clock at ``RUN_TIME``:

- u1, repeat buyer: s1 browses and abandons a cart, s2 checks out o1 (first order), s3 browses between
  the orders, s4 checks out o2 (second order, with a promo). o1 was due 03-03 and came 03-04, but o2
  was placed on 03-02: at the second order its punctuality was unknown.
- u2, one-time buyer: s5 checks out o3 (promo, delivered before its estimate); s6 browses days later.
- u3 never buys: s7.
- u4, repeat buyer: s8 starts *before* the first order but checks out the second (o5); s9, inside it,
  checks out o4 (first order), whose estimate passed undelivered before o5.
- u5, one-time buyer: s10 checks out o6 without an add-to-cart; o6 is due after the run's clock.

``WINDOW`` is what each buyer did up to and including their first order, worked out by hand from the
events below (the comments show the sums). ``stats_shop`` builds a larger shop for the statistics.
"""

from __future__ import annotations

import datetime as dt

from known_data import uid

RUN_TIME = dt.datetime(2021, 3, 8, tzinfo=dt.UTC)
D = dt.date(2021, 3, 1)

U1, U2, U3, U4, U5 = (uid(1, n) for n in range(11, 16))
P1, P2, P3 = (uid(3, n) for n in range(11, 14))
O1, O2, O3, O4, O5, O6, O7 = (uid(4, n) for n in range(11, 18))
S = {n: uid(5, 10 + n) for n in range(1, 13)}


def _user(user_id, signed_up):
    return {
        "user_id": user_id,
        "first_name": "T",
        "last_name": "Est",
        "email": f"{user_id[-4:]}@example.com",
        "phone_number": "555-000-0000",
        "created_at": signed_up,
        "updated_at": signed_up,
        "address_id": None,
    }


def _order(order_id, user_id, at, cost, shipping, total, promo=None, estimated=None, delivered=None):
    status = "delivered" if delivered else ("shipped" if estimated else "preparing")
    return {
        "order_id": order_id,
        "user_id": user_id,
        "promo_id": promo,
        "address_id": None,
        "created_at": at,
        "order_cost": cost,
        "shipping_cost": shipping,
        "order_total": total,
        "tracking_id": uid(7, int(order_id[-3:], 16)) if estimated else None,
        "shipping_service": "ups" if estimated else None,
        "estimated_delivery_at": estimated,
        "delivered_at": delivered,
        "status": status,
    }


_numbers = iter(range(1000, 100000))


def event(session, user, at, kind, product=None, order=None):
    n = next(_numbers)
    return {
        "event_id": uid(6, n),
        "session_id": session,
        "user_id": user,
        "page_url": f"https://greenery.com/{kind}/{n}",
        "created_at": at,
        "event_type": kind,
        "order_id": order,
        "product_id": product,
    }


def _d(day_time: str) -> str:
    """'03-01 10:07' -> '2021-03-01T10:07:00Z'."""
    day, time = day_time.split()
    return f"2021-{day}T{time}:00Z" if time.count(":") == 1 else f"2021-{day}T{time}Z"


def _e(session, user, day_time, kind, product=None, order=None):
    return event(S[session], user, _d(day_time), kind, product, order)


SHOP = {
    "addresses": [],
    "users": [
        _user(U1, "2021-01-01T00:00:00Z"),
        _user(U2, "2021-02-01T00:00:00Z"),
        _user(U3, "2021-02-15T00:00:00Z"),
        _user(U4, "2021-02-20T00:00:00Z"),
        _user(U5, "2021-02-25T12:00:00Z"),
    ],
    "products": [
        {"product_id": P1, "name": "Pothos", "price": "10.00", "inventory": 5},
        {"product_id": P2, "name": "Monstera", "price": "25.50", "inventory": 5},
        {"product_id": P3, "name": "Cactus", "price": "4.25", "inventory": 5},
    ],
    "promos": [{"promo_id": "spring", "discount": "1", "status": "active"}],
    "orders": [
        # o1: p2 x2 = 51.00 + 4.00; the order row lands 30 s after its checkout event.
        _order(O1, U1, "2021-03-01T10:07:30Z", "51.00", "4.00", "55.00", None, _d("03-03 10:00"), _d("03-04 10:00")),
        _order(O2, U1, "2021-03-02T12:00:00Z", "4.25", "1.00", "4.25", "spring", _d("03-04 12:00")),
        # o3: p1 x1 + p3 x4 = 27.00 + 3.00 - 1.00; the order row lands 10 s before its checkout event.
        _order(
            O3, U2, "2021-03-01T13:11:50Z", "27.00", "3.00", "29.00", "spring", _d("03-03 13:00"), _d("03-02 13:00")
        ),
        _order(O4, U4, "2021-03-01T16:20:00Z", "10.00", "2.00", "12.00", None, _d("03-01 17:00"), _d("03-02 09:00")),
        _order(O5, U4, "2021-03-01T17:30:00Z", "51.00", "0", "51.00"),
        _order(O6, U5, "2021-03-01T20:05:00Z", "8.50", "1.50", "10.00", None, _d("03-10 00:00")),
    ],
    "order_items": [
        {"order_id": O1, "product_id": P2, "quantity": 2},
        {"order_id": O2, "product_id": P3, "quantity": 1},
        {"order_id": O3, "product_id": P1, "quantity": 1},
        {"order_id": O3, "product_id": P3, "quantity": 4},
        {"order_id": O4, "product_id": P1, "quantity": 1},
        {"order_id": O5, "product_id": P2, "quantity": 2},
        {"order_id": O6, "product_id": P3, "quantity": 2},
    ],
    "events": [
        # u1
        _e(1, U1, "03-01 09:00", "page_view", P1),
        _e(1, U1, "03-01 09:02", "page_view", P2),
        _e(1, U1, "03-01 09:04", "add_to_cart", P1),
        _e(1, U1, "03-01 09:10", "page_view", P1),
        _e(2, U1, "03-01 10:00", "page_view", P2),
        _e(2, U1, "03-01 10:01", "add_to_cart", P2),
        _e(2, U1, "03-01 10:03", "page_view", P1),
        _e(2, U1, "03-01 10:07", "checkout", order=O1),
        _e(2, U1, "03-01 18:00", "package_shipped", order=O1),
        _e(3, U1, "03-02 09:00", "page_view", P3),
        _e(3, U1, "03-02 09:05", "page_view", P3),
        _e(3, U1, "03-02 09:06", "add_to_cart", P3),
        _e(4, U1, "03-02 11:50", "page_view", P3),
        _e(4, U1, "03-02 11:55", "add_to_cart", P3),
        _e(4, U1, "03-02 12:00", "checkout", order=O2),
        # u2
        _e(5, U2, "03-01 13:00", "page_view", P1),
        _e(5, U2, "03-01 13:01", "page_view", P1),
        _e(5, U2, "03-01 13:02", "page_view", P3),
        _e(5, U2, "03-01 13:04", "add_to_cart", P1),
        _e(5, U2, "03-01 13:06", "add_to_cart", P3),
        _e(5, U2, "03-01 13:12", "checkout", order=O3),
        _e(6, U2, "03-05 09:00", "page_view", P2),
        _e(6, U2, "03-05 09:01", "add_to_cart", P2),
        # u3
        _e(7, U3, "03-01 15:00", "page_view", P2),
        # u4: s8 begins before the first order and ends in the second
        _e(8, U4, "03-01 16:00", "page_view", P2),
        _e(8, U4, "03-01 16:01", "page_view", P2),
        _e(9, U4, "03-01 16:10", "page_view", P1),
        _e(9, U4, "03-01 16:12", "add_to_cart", P1),
        _e(9, U4, "03-01 16:20", "checkout", order=O4),
        _e(8, U4, "03-01 17:25", "add_to_cart", P2),
        _e(8, U4, "03-01 17:30", "checkout", order=O5),
        # u5
        _e(10, U5, "03-01 20:00", "page_view", P3),
        _e(10, U5, "03-01 20:05", "checkout", order=O6),
    ],
}

# Up to and including the first order (int_user_behavior, through_first_order), by hand:
# u1: s1 (09:00-09:10, 3 views of p1 p2 p1, a cart, no checkout) + s2 (10:00-10:07, 2 views, cart 10:01,
#     checkout 10:07); s3 and s4 come after o1. Sessions 10 and 7 min. o1 = 55.00, 2 units of 1 product.
#     Signed up 2021-01-01 00:00, o1 at 03-01 10:07:30: 59 d + 36450 s = 59.421875 d.
# u2: s5 (13:00-13:12, views p1 p1 p3, carts 13:04 13:06, checkout 13:12); s6 is after o3. o3 = 29.00 with
#     a promo, 5 units of 2 products; delivered 03-02 before its 03-03 estimate. 28 d + 47510 s.
# u4: s9 only (16:10-16:20, cart 16:12): s8 checks out only o5, the second order. o4 = 12.00; due 17:00,
#     undelivered when o5 came at 17:30: late. 9 d + 58800 s.
# u5: s10 (20:00-20:05), no cart: no cart-to-checkout time; o6 due 03-10, after the clock: unknown.
#     4 d + 29100 s.
# Repeat-favoured products (first orders, leave-one-out): p1 is in u4's (repeat) and u2's (one-time) first
# orders, p2 in u1's (repeat), p3 in u2's and u5's (one-time). Without u1, no repeat buyer had p2: not
# favoured (with u1 it would be: 1/2 > 0/2). Without u2, p1 is 1 of 2 repeat buyers vs 0 of 1 one-time:
# favoured (with u2 it would not be: 1/2 = 1/2). u4's p1 without u4: 0/1 vs 1/2; u5's p3: 0/2 vs 1/1.
WINDOW = {
    "sessions": {U1: 2, U4: 1, U2: 1, U5: 1},
    "page_views": {U1: 5, U4: 1, U2: 3, U5: 1},
    "products_viewed": {U1: 2, U4: 1, U2: 2, U5: 1},
    "add_to_carts": {U1: 2, U4: 1, U2: 2, U5: 0},
    "carts_abandoned": {U1: 1, U4: 0, U2: 0, U5: 0},
    "avg_session_minutes": {U1: 8.5, U4: 10, U2: 12, U5: 5},
    "total_session_minutes": {U1: 17, U4: 10, U2: 12, U5: 5},
    "minutes_cart_to_checkout": {U1: 6, U4: 8, U2: 8, U5: None},
    "first_order_total": {U1: 55, U4: 12, U2: 29, U5: 10},
    "first_order_units": {U1: 2, U4: 1, U2: 5, U5: 2},
    "first_order_products": {U1: 1, U4: 1, U2: 2, U5: 1},
    "first_order_used_promo": {U1: 0, U4: 0, U2: 1, U5: 0},
    "first_order_delivered_late": {U1: None, U4: 1, U2: 0, U5: None},
    "bought_repeat_favoured_product": {U1: 0, U4: 0, U2: 1, U5: 0},
    "days_signup_to_first_order": {
        U1: 59 + 36450 / 86400,
        U4: 9 + 58800 / 86400,
        U2: 28 + 47510 / 86400,
        U5: 4 + 29100 / 86400,
    },
}
# Over all history (fact_user_behavior), by hand. Session lengths: u1 s1 10, s2 7 (its shipping event at 18:00
# is the shop's, not u1's), s3 6, s4 10 min; u2 s5 12, s6 1; u3 s7 0 (one event); u4 s8 90 (16:00-17:30),
# s9 10; u5 s10 5. Cart to checkout: u1 s2 6, s4 5; u4 s8 5, s9 8. Deliveries by the clock (03-08): o1 late
# (03-04 > 03-03), o2 late (due 03-04, never delivered), o3 on time, o4 late, o5 without an estimate, o6
# not due yet. Repeat-favoured: u4's o5 holds p2, which u1 (repeat) had first and no one-time buyer had.
ALL_HISTORY = {
    U1: dict(
        sessions=4,
        page_views=8,
        products_viewed=3,
        add_to_carts=4,
        carts_abandoned=2,
        avg_session_minutes=8.25,
        total_session_minutes=33,
        median_minutes_cart_to_checkout=5.5,
        orders=2,
        promo_order_share=0.5,
        avg_order_total=29.625,
        avg_order_units=1.5,
        avg_order_products=1,
        avg_days_between_orders=93150 / 86400,
        deliveries_known=2,
        late_deliveries=2,
        bought_repeat_favoured_product=False,
        is_buyer=True,
        is_repeat_buyer=True,
        days_signup_to_first_order=59 + 36450 / 86400,
    ),
    U2: dict(
        sessions=2,
        page_views=4,
        products_viewed=3,
        add_to_carts=3,
        carts_abandoned=1,
        avg_session_minutes=6.5,
        total_session_minutes=13,
        median_minutes_cart_to_checkout=8,
        orders=1,
        promo_order_share=1,
        avg_order_total=29,
        avg_order_units=5,
        avg_order_products=2,
        avg_days_between_orders=None,
        deliveries_known=1,
        late_deliveries=0,
        bought_repeat_favoured_product=True,
        is_buyer=True,
        is_repeat_buyer=False,
        days_signup_to_first_order=28 + 47510 / 86400,
    ),
    U3: dict(
        sessions=1,
        page_views=1,
        products_viewed=1,
        add_to_carts=0,
        carts_abandoned=0,
        avg_session_minutes=0,
        total_session_minutes=0,
        median_minutes_cart_to_checkout=None,
        orders=0,
        promo_order_share=None,
        avg_order_total=None,
        avg_order_units=None,
        avg_order_products=None,
        avg_days_between_orders=None,
        deliveries_known=0,
        late_deliveries=0,
        bought_repeat_favoured_product=False,
        is_buyer=False,
        is_repeat_buyer=False,
        days_signup_to_first_order=None,
    ),
    U4: dict(
        sessions=2,
        page_views=3,
        products_viewed=2,
        add_to_carts=2,
        carts_abandoned=0,
        avg_session_minutes=50,
        total_session_minutes=100,
        median_minutes_cart_to_checkout=6.5,
        orders=2,
        promo_order_share=0,
        avg_order_total=31.5,
        avg_order_units=1.5,
        avg_order_products=1,
        avg_days_between_orders=4200 / 86400,
        deliveries_known=1,
        late_deliveries=1,
        bought_repeat_favoured_product=True,
        is_buyer=True,
        is_repeat_buyer=True,
        days_signup_to_first_order=9 + 58800 / 86400,
    ),
    U5: dict(
        sessions=1,
        page_views=1,
        products_viewed=1,
        add_to_carts=0,
        carts_abandoned=0,
        avg_session_minutes=5,
        total_session_minutes=5,
        median_minutes_cart_to_checkout=None,
        orders=1,
        promo_order_share=0,
        avg_order_total=10,
        avg_order_units=2,
        avg_order_products=1,
        avg_days_between_orders=None,
        deliveries_known=0,
        late_deliveries=0,
        bought_repeat_favoured_product=False,
        is_buyer=True,
        is_repeat_buyer=False,
        days_signup_to_first_order=4 + 29100 / 86400,
    ),
}
REPEAT = {U1, U4}
ONE_TIME = {U2, U5}


def after_the_second_order() -> dict[str, list[dict]]:
    """Rows that happen after each repeat buyer's second order or a one-time buyer's only one, or that belong
    to the second order: none may change what the buyers did up to their first order."""
    return {
        "events": [
            _e(4, U1, "03-02 11:40", "page_view", P1),  # in the second order's session, before its checkout
            _e(4, U1, "03-02 11:41", "add_to_cart", P1),
            _e(11, U1, "03-03 10:00", "page_view", P2),  # a session after the second order
            _e(11, U1, "03-03 10:02", "add_to_cart", P2),
            _e(11, U1, "03-03 10:09", "checkout", order=O7),  # and a third order
            _e(8, U4, "03-01 15:59", "page_view", P3),  # before the first order, in the second order's session
            _e(12, U4, "03-04 08:00", "page_view", P1),
            _e(6, U2, "03-05 09:03", "page_view", P3),  # the one-time buyer after their order
            _e(12, U5, "03-06 08:00", "page_view", P1),
        ],
        "orders": [_order(O7, U1, "2021-03-03T10:10:00Z", "25.50", "0", "24.50", "spring", _d("03-04 10:00"))],
        "order_items": [{"order_id": O7, "product_id": P2, "quantity": 1}],
    }


def stats_shop(repeat_views: list[int], one_time_views: list[int]) -> dict[str, list[dict]]:
    """One buyer per number: a session of that many page views of p1, an add-to-cart and a first order;
    repeat buyers then browse a lot and order again (which must not count)."""
    users, orders, items, events = [], [], [], []
    buyers = [(True, v) for v in repeat_views] + [(False, v) for v in one_time_views]
    for n, (repeat, views) in enumerate(buyers, 1):
        user, session = uid(1, 500 + n), uid(5, 500 + n)
        users.append(_user(user, "2021-02-01T00:00:00Z"))
        first, second = uid(4, 500 + n), uid(4, 700 + n)
        at = dt.datetime(2021, 3, 1, 8, tzinfo=dt.UTC) + dt.timedelta(minutes=10 * n)

        def stamp(minutes: float, at: dt.datetime = at) -> str:
            return (at + dt.timedelta(minutes=minutes)).isoformat()

        events += [event(session, user, stamp(0.1 * i), "page_view", P1) for i in range(views)]
        events += [
            event(session, user, stamp(5), "add_to_cart", P1),
            event(session, user, stamp(6), "checkout", None, first),
        ]
        orders.append(_order(first, user, stamp(6), "10.00", "0", "10.00"))
        items.append({"order_id": first, "product_id": P1, "quantity": 1})
        if repeat:
            later = uid(5, 700 + n)
            events += [event(later, user, _d("03-03 09:00"), "page_view", P1) for _ in range(20)]
            events.append(event(later, user, _d("03-03 09:30"), "checkout", None, second))
            orders.append(_order(second, user, "2021-03-03T09:30:00Z", "10.00", "0", "10.00"))
            items.append({"order_id": second, "product_id": P1, "quantity": 1})
    return {
        "addresses": [],
        "users": users,
        "products": SHOP["products"],
        "promos": SHOP["promos"],
        "orders": orders,
        "order_items": items,
        "events": events,
    }


def load(conn, tables: dict[str, list[dict]], schema: str = "raw") -> None:
    from greenery.sources import load as raw

    for table, table_rows in tables.items():
        raw.load_rows(conn, table, table_rows, schema)
