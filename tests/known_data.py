"""A hand-built Greenery: few enough rows that every mart value below was worked out by hand.

D = 2021-02-12. u4 signs up and o4/s5 happen on 2021-02-13, after D; s4's last page view is written
with a +01:00 offset but is 2021-02-12 23:25 UTC.
"""

from __future__ import annotations


def uid(kind: int, n: int) -> str:
    """A readable UUID: kind 1 users, 2 addresses, 3 products, 4 orders, 5 sessions, 6 events, 7 tracking."""
    return f"{kind:08x}-0000-4000-8000-{n:012x}"


U1, U2, U3, U4 = (uid(1, n) for n in range(1, 5))
A1, A2 = uid(2, 1), uid(2, 2)
P1, P2, P3 = (uid(3, n) for n in range(1, 4))
O1, O2, O3, O4 = (uid(4, n) for n in range(1, 5))
S1, S2, S3, S4, S5 = (uid(5, n) for n in range(1, 6))

RAW = {
    "addresses": [
        # A source that stored zipcodes as numbers lost the leading zero: staging puts it back.
        {
            "address_id": A1,
            "address": "1 Fern Way",
            "zipcode": "2134",
            "state": "Massachusetts",
            "country": "United States",
        },
        {
            "address_id": A2,
            "address": "2 Palm Road",
            "zipcode": "92056",
            "state": "California",
            "country": "United States",
        },
    ],
    "users": [
        {
            "user_id": U1,
            "first_name": "Ada",
            "last_name": "Moss",
            "email": "ada@example.com",
            "phone_number": "555-000-0001",
            "created_at": "2020-06-01T00:00:00Z",
            "updated_at": "2020-06-02T00:00:00Z",
            "address_id": A1,
        },
        {
            "user_id": U2,
            "first_name": "Bo",
            "last_name": "Fig",
            "email": "bo@example.com",
            "phone_number": "",
            "created_at": "2020-07-01T00:00:00Z",
            "updated_at": "2020-07-01T00:00:00Z",
            "address_id": A2,
        },
        {
            "user_id": U3,
            "first_name": "Cy",
            "last_name": "Ivy",
            "email": "cy@example.com",
            "phone_number": "555-000-0003",
            "created_at": "2021-02-12T23:00:00Z",
            "updated_at": "2021-02-12T23:00:00Z",
            "address_id": None,
        },
        {
            "user_id": U4,
            "first_name": "Di",
            "last_name": "Oak",
            "email": "di@example.com",
            "phone_number": "555-000-0004",
            "created_at": "2021-02-13T02:00:00Z",
            "updated_at": "2021-02-13T02:00:00Z",
            "address_id": A2,
        },
    ],
    "products": [
        {"product_id": P1, "name": "Pothos", "price": "10.00", "inventory": 5},
        {"product_id": P2, "name": "Monstera", "price": "25.50", "inventory": 0},
        {"product_id": P3, "name": "Cactus", "price": "4.25", "inventory": 100},
    ],
    "promos": [{"promo_id": "spring", "discount": "5", "status": "active"}],
    "orders": [
        # o1: p1 x2 (20.00) + p2 x1 (25.50) = 45.50, shipping 5.00, no promo -> 50.50; 2.0 days to deliver.
        {
            "order_id": O1,
            "user_id": U1,
            "promo_id": None,
            "address_id": A1,
            "created_at": "2021-02-11T10:15:00Z",
            "order_cost": "45.50",
            "shipping_cost": "5.00",
            "order_total": "50.50",
            "tracking_id": uid(7, 1),
            "shipping_service": "ups",
            "estimated_delivery_at": "2021-02-14T10:15:00Z",
            "delivered_at": "2021-02-13T10:15:00Z",
            "status": "delivered",
        },
        # o2: p1 x1 = 10.00, shipping 2.00, promo spring -5 -> 7.00; 1.5 days to deliver.
        {
            "order_id": O2,
            "user_id": U1,
            "promo_id": "spring",
            "address_id": A1,
            "created_at": "2021-02-12T10:40:00Z",
            "order_cost": "10.00",
            "shipping_cost": "2.00",
            "order_total": "7.00",
            "tracking_id": uid(7, 2),
            "shipping_service": "usps",
            "estimated_delivery_at": "2021-02-14T10:40:00Z",
            "delivered_at": "2021-02-13T22:40:00Z",
            "status": "delivered",
        },
        # o3: p2 x3 = 76.50, shipped, not delivered.
        {
            "order_id": O3,
            "user_id": U2,
            "promo_id": None,
            "address_id": A2,
            "created_at": "2021-02-12T10:55:00Z",
            "order_cost": "76.50",
            "shipping_cost": "0",
            "order_total": "76.50",
            "tracking_id": uid(7, 3),
            "shipping_service": "fedex",
            "estimated_delivery_at": "2021-02-15T10:55:00Z",
            "delivered_at": None,
            "status": "shipped",
        },
        # o4: after D. p1 x1 = 10.00 + 1.00 shipping.
        {
            "order_id": O4,
            "user_id": U3,
            "promo_id": None,
            "address_id": None,
            "created_at": "2021-02-13T09:00:00Z",
            "order_cost": "10.00",
            "shipping_cost": "1.00",
            "order_total": "11.00",
            "tracking_id": None,
            "shipping_service": None,
            "estimated_delivery_at": None,
            "delivered_at": None,
            "status": "preparing",
        },
    ],
    "order_items": [
        {"order_id": O1, "product_id": P1, "quantity": 2},
        {"order_id": O1, "product_id": P2, "quantity": 1},
        {"order_id": O2, "product_id": P1, "quantity": 1},
        {"order_id": O3, "product_id": P2, "quantity": 3},
        {"order_id": O4, "product_id": P1, "quantity": 1},
    ],
}


def _event(n, session, user, at, kind, order=None, product=None):
    url = f"https://greenery.com/{'product/' + product if product else kind + '/' + str(order)}"
    return {
        "event_id": uid(6, n),
        "session_id": session,
        "user_id": user,
        "page_url": url,
        "created_at": at,
        "event_type": kind,
        "order_id": order,
        "product_id": product,
    }


RAW["events"] = [
    _event(1, S1, U1, "2021-02-11T10:00:00Z", "page_view", product=P1),
    _event(2, S1, U1, "2021-02-11T10:05:00Z", "page_view", product=P2),
    _event(3, S1, U1, "2021-02-11T10:10:00Z", "add_to_cart", product=P1),
    _event(4, S1, U1, "2021-02-11T10:11:00Z", "add_to_cart", product=P2),
    _event(5, S1, U1, "2021-02-11T10:15:00Z", "checkout", order=O1),
    _event(6, S1, U1, "2021-02-12T08:00:00Z", "package_shipped", order=O1),
    _event(7, S2, U1, "2021-02-12T10:30:00Z", "page_view", product=P1),
    _event(8, S2, U1, "2021-02-12T10:31:00Z", "page_view", product=P1),
    _event(9, S2, U1, "2021-02-12T10:35:00Z", "add_to_cart", product=P1),
    _event(10, S2, U1, "2021-02-12T10:40:00Z", "checkout", order=O2),
    _event(11, S3, U2, "2021-02-12T10:50:00Z", "page_view", product=P2),
    _event(12, S3, U2, "2021-02-12T10:52:00Z", "add_to_cart", product=P2),
    _event(13, S3, U2, "2021-02-12T10:55:00Z", "checkout", order=O3),
    _event(14, S4, U3, "2021-02-12T11:20:00Z", "page_view", product=P1),
    _event(15, S4, U3, "2021-02-13T00:25:00+01:00", "page_view", product=P2),
    _event(16, S5, U3, "2021-02-13T08:55:00Z", "page_view", product=P1),
    _event(17, S5, U3, "2021-02-13T09:00:00Z", "checkout", order=O4),
]


def load(conn, schema: str = "raw") -> None:
    from greenery.sources import load as raw

    for table, table_rows in RAW.items():
        raw.load_rows(conn, table, table_rows, schema)
