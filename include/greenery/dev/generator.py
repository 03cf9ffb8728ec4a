"""Deterministic generator of Greenery-shaped raw CSVs at any scale factor.

The output imitates the shape of the public Greenery dataset (seven raw tables, same headers, same
null patterns, same value formats) so the pipeline can be demoed and load-tested without the real
data. Scale 1 is about the size of the real dataset; scale ``s`` has ``s`` times the users, orders
and events, spread over more days so that the volume per day stays realistic.

Everything is drawn from one ``random.Random(seed)`` in a fixed order, so the same arguments always
produce byte-identical files. Rows are streamed to disk user by user (a user with their addresses,
orders, items and sessions), so memory holds the catalogues plus one small integer per user (their
number of orders) and per order (its day), never a whole table: ~20 MB peak RSS at scale 1000.
"""

from __future__ import annotations

import bisect
import csv
import datetime as dt
import functools
import itertools
import math
import os
import random
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from greenery.dev import stop_signals

__all__ = ["HEADERS", "default_days", "generate"]

# The header line of each table, exactly as in the source dataset.
HEADERS: dict[str, tuple[str, ...]] = {
    table: tuple(header.split(","))
    for table, header in {
        "addresses": "address_id,address,zipcode,state,country",
        "users": "user_id,first_name,last_name,email,phone_number,created_at,updated_at,address_id",
        "products": "product_id,name,price,inventory",
        "promos": "promo_id,discount,status",
        "orders": (
            "order_id,user_id,promo_id,address_id,created_at,order_cost,shipping_cost,order_total,"
            "tracking_id,shipping_service,estimated_delivery_at,delivered_at,status"
        ),
        "order_items": "order_id,product_id,quantity",
        "events": "event_id,session_id,user_id,page_url,created_at,event_type,order_id,product_id",
    }.items()
}

# What a table's file is named while it is written (its .csv name once the whole dataset is written).
PARTIAL_SUFFIX = ".partial"
PREVIOUS_SUFFIX = ".previous"  # an earlier file, kept while the new ones move in

BASE_URL = "https://greenery.com"
DAY = 86_400
HOUR = 3_600

# Volumes of the real dataset at scale 1; orders and events follow from the per-user draws below.
USERS_AT_SCALE_1 = 130

# Reference data. The formatter would put every element on its own line; tables read better packed.
# fmt: off
PLANTS = (
    "Pothos", "Bamboo", "Philodendron", "Monstera", "String of pearls", "ZZ Plant", "Snake Plant", "Orchid",
    "Birds Nest Fern", "Calathea Makoyana", "Peace Lily", "Bird of Paradise", "Fiddle Leaf Fig", "Ficus",
    "Pilea Peperomioides", "Angel Wings Begonia", "Jade Plant", "Arrow Head", "Majesty Palm",
    "Spider Plant", "Money Tree", "Cactus", "Devil's Ivy", "Alocasia Polly", "Pink Anthurium",
    "Dragon Tree", "Aloe Vera", "Rubber Plant", "Ponytail Palm", "Boston Fern",
)
PRICE_CENTS = (0, 25, 50, 75, 95)

# (promo_id, discount in dollars, status): a fixed catalogue with exactly one active promo.
PROMOS = (
    ("task-force", 2, "inactive"),
    ("synergy", 13, "inactive"),
    ("green-thumb", 10, "active"),
    ("first-leaf", 17, "inactive"),
    ("paradigm", 20, "inactive"),
    ("bandwidth", 11, "inactive"),
)

FIRST_NAMES = (
    "Ada", "Alden", "Amara", "Bram", "Briony", "Cass", "Cedric", "Cora", "Dale", "Delphine", "Edith",
    "Elio", "Fern", "Flint", "Gerda", "Gideon", "Hazel", "Hollis", "Ines", "Ivo", "Juniper", "Jasper",
    "Keslie", "Kit", "Linden", "Lorna", "Maple", "Milo", "Nell", "Nico", "Olive", "Orrin", "Pippa", "Quill",
    "Rowan", "Rue", "Sage", "Silas", "Tansy", "Theo", "Una", "Uriel", "Vera", "Vaughn", "Willow", "Wren",
    "Xenia", "Yara", "Yusuf", "Zinnia",
)
LAST_NAMES = (
    "Abbott", "Ashdown", "Birch", "Bramley", "Carver", "Coppice", "Dunmore", "Elwood", "Fairleigh",
    "Fenwick", "Garland", "Greaves", "Hartley", "Heathcote", "Ingram", "Jessop", "Kernan", "Larkin",
    "Loxley", "Marsh", "Merriman", "Norwood", "Oakes", "Pennock", "Quarry", "Redfern", "Rushton",
    "Sedgwick", "Thorne", "Underhill", "Vale", "Whitlock", "Woodward", "Yarrow", "Ashby", "Blackwood",
    "Cole", "Dane", "Everly", "Frost",
)
EMAIL_DOMAINS = (
    "example.com", "mail.example", "greenmail.test", "inbox.example", "post.example", "webmail.test",
)
STREET_NAMES = (
    "Artisan", "Carberry", "Tennyson", "Sutherland", "Sherman", "Oak", "Maple", "Cedar", "Juniper",
    "Hawthorn", "Linden", "Willow", "Aspen", "Magnolia", "Birchwood", "Meadow", "Prairie", "Ridge",
    "Summit", "Valley", "Harbor", "Lakeview", "Forest", "Orchard", "Sunflower", "Ivy", "Laurel", "Cypress",
    "Redwood", "Sequoia",
)
STREET_SUFFIXES = (
    "Street", "Avenue", "Road", "Lane", "Drive", "Court", "Place", "Alley", "Park", "Pass", "Way",
)

# (state, lowest zip, highest zip, relative population). New England and New Jersey give zips with a
# leading zero, which a loader that reads zipcodes as integers would silently break.
STATES = (
    ("California", 90000, 96199, 39), ("Texas", 75000, 79999, 29), ("Florida", 32000, 34999, 21),
    ("New York", 10000, 14999, 20), ("Pennsylvania", 15000, 19699, 13), ("Illinois", 60000, 62999, 13),
    ("Ohio", 43000, 45999, 12), ("Georgia", 30000, 31999, 11), ("North Carolina", 27000, 28999, 10),
    ("Michigan", 48000, 49999, 10), ("New Jersey", 7000, 8999, 9), ("Virginia", 22000, 24699, 9),
    ("Washington", 98000, 99499, 8), ("Arizona", 85000, 86599, 7), ("Massachusetts", 1000, 2799, 7),
    ("Tennessee", 37000, 38599, 7), ("Indiana", 46000, 47999, 7), ("Maryland", 20600, 21999, 6),
    ("Missouri", 63000, 65899, 6), ("Colorado", 80000, 81699, 6), ("Minnesota", 55000, 56799, 6),
    ("Oregon", 97000, 97999, 4), ("Connecticut", 6000, 6999, 4), ("Nevada", 88900, 89899, 3),
    ("Utah", 84000, 84799, 3), ("Kansas", 66000, 67999, 3), ("Maine", 3900, 4999, 1),
    ("New Hampshire", 3000, 3899, 1), ("Rhode Island", 2800, 2999, 1), ("Vermont", 5000, 5999, 1),
    ("District of Columbia", 20000, 20599, 1),
)
# fmt: on

# Orders per user (index = orders), the source's own histogram: 124 of 130 users buy, 99 of them
# again, 361 orders in all. Users get these counts stratified (see _orders_per_user).
ORDERS_PER_USER_WEIGHTS = (6, 25, 28, 34, 20, 10, 2, 4, 1)
ITEMS_PER_ORDER_WEIGHTS = (0, 20, 35, 30, 15)  # index = distinct products; mean 2.4
QUANTITY_WEIGHTS = (0, 30, 28, 22, 12, 8)  # index = quantity
# Product pages a buyer looks at without buying; tuned so the event mix lands near the real one.
EXTRA_VIEWS_WEIGHTS = (25, 40, 25, 10)
BROWSE_VIEWS_WEIGHTS = (0, 30, 30, 25, 12, 3)
BROWSE_ADD_TO_CART_RATE = 0.28
# A user has about one browsing-only session per two orders, plus some when they never buy.
BROWSE_SESSION_RATE = 0.5

PROMO_RATE = 0.12
ALT_ADDRESS_RATE = 0.15  # users who also ship to a second address (gifts, office)
ALT_ADDRESS_USE = 0.35
SHIPPING_SERVICES = ("ups", "fedex", "usps", "dhl")
SHIPPING_WEIGHTS = (17, 10, 6, 1)
MISSING_ESTIMATE_RATE = 0.065

# Order status. Over the whole window the source's mix holds (84% delivered, 16% still open, of which
# 46% preparing); within it, orders of the last day or so before the end of the window are more often
# still open or preparing, as in the source snapshot. See _StatusModel.
OPEN_RATE = 0.16
OPEN_RECENT_BOOST = 0.12
PREPARING_SHARE = 0.46
PREPARING_RECENT_BOOST = 0.15

# Users signed up between roughly a year and six weeks before the first day of activity.
SIGNUP_EARLIEST = 402 * DAY
SIGNUP_LATEST = 42 * DAY
PROFILE_UPDATE_SPAN = 200 * DAY


def default_days(scale: float) -> int:
    """Days of order activity when none is given: history grows with the scale, capped at a year."""
    if scale <= 1:
        return 2
    return min(365, math.ceil(2 * scale))


def generate(
    out_dir: str | os.PathLike,
    scale: float = 1.0,
    seed: int = 42,
    start: dt.date = dt.date(2021, 2, 10),
    days: int | None = None,
) -> dict[str, int]:
    """Write the seven CSVs into out_dir; return rows written per table.

    ``scale`` multiplies users, orders and events (products and promos are fixed catalogues). Orders
    are spread evenly over ``days`` calendar days from ``start`` (default: :func:`default_days`);
    sessions start up to a few minutes before the first day and shipping events, deliveries and
    estimates run past the last. Existing files of the same names in ``out_dir`` are replaced, all of them
    at the end: a run that stops before leaves them as they were. Same arguments, same bytes.
    """
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale!r}")
    days = default_days(scale) if days is None else days
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
    products = _make_products(rng)
    n_users = max(1, round(USERS_AT_SCALE_1 * scale))
    orders_per_user = _orders_per_user(rng, n_users)
    # A datetime is a date too, but subtracting dates from it fails; keep only its day.
    window_start = _epoch(start.date() if isinstance(start, dt.datetime) else start)
    order_days = _order_days(rng, sum(orders_per_user), days)

    # Each table is written to <table>.csv.partial and all are moved into place only once every row is written:
    # written in place, a run stopped half-way (SIGTERM, an error) destroyed the earlier dataset and left CSVs
    # ending on whole rows, which load-raw took as a complete set (review). load-raw reads only *.csv.
    partials = {table: out / f"{table}.csv{PARTIAL_SUFFIX}" for table in HEADERS}
    try:
        with ExitStack() as stack:
            sink = _Sink(stack, partials)
            for product in products:
                price = _money(product.price_cents)
                sink.write("products", (product.product_id, product.name, price, product.inventory))
            for promo_id, discount, status in PROMOS:
                sink.write("promos", (promo_id, discount, status))
            ctx = _Context(rng, sink, products, window_start, window_start + days * DAY, iter(order_days))
            for n_orders in orders_per_user:
                _write_user(ctx, n_orders)
    except BaseException:  # also the CLI's StopSignal (SIGTERM), which is not an Exception
        for path in partials.values():
            path.unlink(missing_ok=True)
        raise
    with stop_signals.deferred():  # a Ctrl-C or SIGTERM between two moves acts once all seven are in place
        _move_into_place(partials, out)
    return dict(sink.counts)


def _move_into_place(partials: dict[str, Path], out: Path) -> None:
    """Every table's partial file to ``<table>.csv``, or none: a stop or an error between two moves puts the moved
    tables' earlier files back (review: Ctrl-C there left three tables of the new seed beside four of the old). The
    caller defers stops around it: what puts the files back is for errors (a full disk, a permission)."""
    undo: list[tuple[Path, Path | None]] = []  # (a csv in place, the earlier file kept beside it, if any)
    for table in partials:  # left by a run killed here (kill -9): never put back over the files now in place
        (out / f"{table}.csv{PREVIOUS_SUFFIX}").unlink(missing_ok=True)
    try:
        for table, partial in partials.items():
            final = out / f"{table}.csv"
            kept = final.with_name(final.name + PREVIOUS_SUFFIX) if final.exists() else None
            undo.append((final, kept))
            if kept is not None:
                final.replace(kept)
            partial.replace(final)
    except BaseException:
        for final, kept in reversed(undo):
            if kept is not None and kept.exists():
                kept.replace(final)
            elif kept is None:
                final.unlink(missing_ok=True)
        for partial in partials.values():
            partial.unlink(missing_ok=True)
        raise
    for _, kept in undo:
        if kept is not None:
            kept.unlink(missing_ok=True)


# --- plumbing -------------------------------------------------------------------------------------


class _Sink:
    """One csv writer per table, counting the rows it writes."""

    def __init__(self, stack: ExitStack, paths: dict[str, Path]) -> None:
        self.writers: dict[str, Any] = {}  # the csv writer type is private to the csv module
        self.counts = dict.fromkeys(HEADERS, 0)
        for table, header in HEADERS.items():
            # newline="" hands line endings to the csv module, which then writes exactly "\n".
            handle = stack.enter_context(paths[table].open("w", newline="", encoding="utf-8"))
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(header)
            self.writers[table] = writer

    def write(self, table: str, row: Sequence[object]) -> None:
        self.writers[table].writerow(row)
        self.counts[table] += 1


@dataclass(frozen=True)
class _Product:
    product_id: str
    name: str
    price_cents: int
    inventory: int


@dataclass
class _Context:
    rng: random.Random
    sink: _Sink
    products: list[_Product]
    window_start: int
    window_end: int
    order_days: Iterator[int]  # the pre-assigned day offset of each order, in writing order

    def __post_init__(self) -> None:
        # Uneven popularity makes product analytics interesting while keeping each product's
        # view-to-purchase ratio similar, since views and purchases use the same weights.
        popularity = [0.4 + self.rng.random() for _ in self.products]
        self.product_cum_weights = list(itertools.accumulate(popularity))
        self.status_model = _StatusModel((self.window_end - self.window_start) / DAY)


def _uuid4(rng: random.Random) -> str:
    """Same text as str(uuid.UUID(int=rng.getrandbits(128), version=4)), about three times faster."""
    n = rng.getrandbits(128)
    n = (n & ~(0xF000 << 64) & ~(0xC000 << 48)) | (0x4000 << 64) | (0x8000 << 48)
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _epoch(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days * DAY


@functools.lru_cache(maxsize=4096)
def _date_text(day_number: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=day_number)).isoformat()


def _iso(ts: int) -> str:
    """ISO-8601 UTC text of an epoch second; strftime is the hot spot at scale 1000, so avoid it."""
    day_number, rest = divmod(ts, DAY)
    hours, rest = divmod(rest, HOUR)
    minutes, seconds = divmod(rest, 60)
    return f"{_date_text(day_number)}T{hours:02d}:{minutes:02d}:{seconds:02d}Z"


def _money(cents: int) -> str:
    # The shortest float repr of n/100 has at most two decimals, and matches the source's "551.9" style.
    return repr(cents / 100)


class _Weights:
    """A categorical distribution over 0..n-1, with cumulative weights computed once."""

    def __init__(self, weights: Sequence[float]) -> None:
        self.population = range(len(weights))
        self.cum_weights = list(itertools.accumulate(weights))

    def pick(self, rng: random.Random) -> int:
        return rng.choices(self.population, cum_weights=self.cum_weights)[0]


_STATE_DIST = _Weights([weight for *_, weight in STATES])
_ITEMS_DIST = _Weights(ITEMS_PER_ORDER_WEIGHTS)
_QUANTITY_DIST = _Weights(QUANTITY_WEIGHTS)
_EXTRA_VIEWS_DIST = _Weights(EXTRA_VIEWS_WEIGHTS)
_BROWSE_VIEWS_DIST = _Weights(BROWSE_VIEWS_WEIGHTS)
_SHIPPING_DIST = _Weights(SHIPPING_WEIGHTS)


def _orders_per_user(rng: random.Random, n_users: int) -> list[int]:
    """How many orders each user places, in random order.

    Stratified rather than drawn independently: the counts follow ORDERS_PER_USER_WEIGHTS as closely as
    the number of users allows, so order volume is nearly exactly proportional to the scale (and scale 1
    reproduces the source's 361 orders from 130 users) instead of wobbling by several percent.
    """
    cum_weights = list(itertools.accumulate(ORDERS_PER_USER_WEIGHTS))
    total = cum_weights[-1]
    counts = [bisect.bisect_right(cum_weights, (i + 0.5) * total / n_users) for i in range(n_users)]
    rng.shuffle(counts)
    return counts


def _order_days(rng: random.Random, n_orders: int, days: int) -> list[int]:
    """The day offset of every order: as even as possible over the window, in random order.

    Pre-assigning days (one small int per order) rather than drawing a timestamp per order guarantees
    that the first and last day both have orders, so the history spans exactly ``days`` days.
    """
    slots = [i * days // n_orders for i in range(n_orders)]
    rng.shuffle(slots)
    return slots


def _distinct_products(ctx: _Context, k: int, exclude: frozenset[int] = frozenset()) -> list[int]:
    """k distinct product indexes by popularity (rejection is cheap: k <= 5 out of 30)."""
    k = min(k, len(ctx.products) - len(exclude))
    chosen: list[int] = []
    population = range(len(ctx.products))
    while len(chosen) < k:
        index = ctx.rng.choices(population, cum_weights=ctx.product_cum_weights)[0]
        if index not in chosen and index not in exclude:
            chosen.append(index)
    return chosen


# --- rows -----------------------------------------------------------------------------------------


def _write_address(ctx: _Context) -> str:
    rng = ctx.rng
    address_id = _uuid4(rng)
    number = rng.randint(1, 10 ** rng.randint(1, 5) - 1)
    street = f"{number} {rng.choice(STREET_NAMES)} {rng.choice(STREET_SUFFIXES)}"
    state, low, high, _ = STATES[_STATE_DIST.pick(rng)]
    ctx.sink.write("addresses", (address_id, street, f"{rng.randint(low, high):05d}", state, "United States"))
    return address_id


def _write_user(ctx: _Context, n_orders: int) -> None:
    """One user with their addresses, orders, order items and sessions."""
    rng, sink = ctx.rng, ctx.sink
    home = _write_address(ctx)
    other = _write_address(ctx) if rng.random() < ALT_ADDRESS_RATE else None

    user_id = _uuid4(rng)
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    email = f"{first[0].lower()}{last.lower()}{sink.counts['users']}@{rng.choice(EMAIL_DOMAINS)}"
    phone = f"{rng.randint(201, 989)}-{rng.randint(200, 999)}-{rng.randint(0, 9999):04d}"
    created = ctx.window_start - rng.randint(SIGNUP_LATEST, SIGNUP_EARLIEST)
    updated = created + rng.randrange(min(PROFILE_UPDATE_SPAN, ctx.window_end - created))
    sink.write("users", (user_id, first, last, email, phone, _iso(created), _iso(updated), home))

    for _ in range(n_orders):
        address = other if other is not None and rng.random() < ALT_ADDRESS_USE else home
        _write_order(ctx, user_id, address)
    n_browse = sum(rng.random() < BROWSE_SESSION_RATE for _ in range(n_orders + 1))
    for _ in range(n_browse):
        _write_browse_session(ctx, user_id)


class _StatusModel:
    """Chance that an order is still open (and then preparing) given how recent it is.

    Recency is exp(-age in days) at the end of the window. Each rate is a base plus a boost times
    recency; the base is lowered by the boost's average over the window, so the overall mix stays
    at the source's whatever the number of days, while recent orders stay more often open.
    """

    def __init__(self, days: float) -> None:
        mean_recency = (1 - math.exp(-days)) / days
        self.open_base = OPEN_RATE - OPEN_RECENT_BOOST * mean_recency
        self.preparing_base = PREPARING_SHARE - PREPARING_RECENT_BOOST * mean_recency

    def draw(self, rng: random.Random, age_seconds: int) -> str:
        recency = math.exp(-age_seconds / DAY)
        if rng.random() >= self.open_base + OPEN_RECENT_BOOST * recency:
            return "delivered"
        if rng.random() < self.preparing_base + PREPARING_RECENT_BOOST * recency:
            return "preparing"
        return "shipped"


def _write_order(ctx: _Context, user_id: str, address_id: str) -> None:
    rng, sink = ctx.rng, ctx.sink
    order_id = _uuid4(rng)
    created = ctx.window_start + next(ctx.order_days) * DAY + rng.randrange(DAY)
    items = _distinct_products(ctx, _ITEMS_DIST.pick(rng))
    quantities = [_QUANTITY_DIST.pick(rng) for _ in items]
    order_cost = sum(q * ctx.products[i].price_cents for i, q in zip(items, quantities, strict=True))
    shipping_cost = rng.randint(100, 999)
    promo_id, discount = "", 0
    if rng.random() < PROMO_RATE:
        promo_id, discount, _ = rng.choice(PROMOS)
    status = ctx.status_model.draw(rng, ctx.window_end - created)

    tracking_id = service = estimated = delivered = ""
    if status != "preparing":
        tracking_id = _uuid4(rng)
        service = SHIPPING_SERVICES[_SHIPPING_DIST.pick(rng)]
        if rng.random() >= MISSING_ESTIMATE_RATE:
            estimated = _iso(created + rng.randint(1, 5) * DAY)
    if status == "delivered":
        delivered = _iso(created + rng.randint(1, 7) * DAY + rng.randrange(8 * HOUR))

    total = _order_total(order_cost, shipping_cost, discount)
    money = (_money(order_cost), _money(shipping_cost), _money(total))
    row = (order_id, user_id, promo_id, address_id, _iso(created), *money, tracking_id, service)
    sink.write("orders", (*row, estimated, delivered, status))
    for index, quantity in zip(items, quantities, strict=True):
        sink.write("order_items", (order_id, ctx.products[index].product_id, quantity))
    session = _write_checkout(ctx, user_id, order_id, created, items)
    if status != "preparing":
        session.order_event(created + rng.randint(2 * HOUR, 10 * HOUR), "package_shipped", order_id)


def _order_total(order_cost: int, shipping_cost: int, discount_dollars: int) -> int:
    """What the customer pays, in cents: a promo can lower the bill to zero but never below."""
    return max(0, order_cost + shipping_cost - discount_dollars * 100)


def _write_checkout(ctx: _Context, user_id: str, order_id: str, created: int, items: list[int]) -> _Session:
    """The session that placed the order: browse, add the bought products to the cart, check out."""
    rng = ctx.rng
    extras = _distinct_products(ctx, _EXTRA_VIEWS_DIST.pick(rng), exclude=frozenset(items))
    viewed = items + extras
    rng.shuffle(viewed)
    bought = set(items)
    steps: list[tuple[str, int]] = []
    for index in viewed:
        steps.append(("page_view", index))
        if index in bought:
            steps.append(("add_to_cart", index))

    # The browsing happened in the minutes before checkout, which is stamped at (or a second
    # before) the order itself, as in the source system.
    checkout_at = created - rng.randint(0, 1)
    gaps = [rng.randint(5, 100) for _ in steps]
    ts = checkout_at - sum(gaps)
    session = _Session(ctx, user_id)
    for (event_type, index), gap in zip(steps, gaps, strict=True):
        session.product_event(ts, event_type, index)
        ts += gap
    session.order_event(checkout_at, "checkout", order_id)
    return session


def _write_browse_session(ctx: _Context, user_id: str) -> None:
    """A session that looks at a few products, sometimes adds one to the cart, and leaves."""
    rng = ctx.rng
    session = _Session(ctx, user_id)
    ts = ctx.window_start + rng.randrange(ctx.window_end - ctx.window_start)
    for index in _distinct_products(ctx, _BROWSE_VIEWS_DIST.pick(rng)):
        session.product_event(ts, "page_view", index)
        ts += rng.randint(5, 100)
        if rng.random() < BROWSE_ADD_TO_CART_RATE:
            session.product_event(ts, "add_to_cart", index)
            ts += rng.randint(5, 100)


class _Session:
    """Writes the events of one user's visit; every event row gets a fresh event_id."""

    def __init__(self, ctx: _Context, user_id: str) -> None:
        self.ctx = ctx
        self.user_id = user_id
        self.session_id = _uuid4(ctx.rng)

    def product_event(self, ts: int, event_type: str, index: int) -> None:
        product_id = self.ctx.products[index].product_id
        self._write(ts, event_type, f"{BASE_URL}/product/{product_id}", "", product_id)

    def order_event(self, ts: int, event_type: str, order_id: str) -> None:
        page = "checkout" if event_type == "checkout" else "shipping"
        self._write(ts, event_type, f"{BASE_URL}/{page}/{order_id}", order_id, "")

    def _write(self, ts: int, event_type: str, url: str, order_id: str, product_id: str) -> None:
        event_id = _uuid4(self.ctx.rng)
        row = (event_id, self.session_id, self.user_id, url, _iso(ts), event_type, order_id, product_id)
        self.ctx.sink.write("events", row)


def _make_products(rng: random.Random) -> list[_Product]:
    products = []
    for name in PLANTS:
        price_cents = rng.randint(10, 69) * 100 + rng.choice(PRICE_CENTS)
        products.append(_Product(_uuid4(rng), name, price_cents, rng.randint(0, 100)))
    return products
