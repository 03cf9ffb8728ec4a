"""Tests of the synthetic Greenery data generator: the files must look like the source dataset."""

from __future__ import annotations

import csv
import datetime as dt
import random
import re
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from greenery.dev import generator
from greenery.dev.generator import default_days, generate

TABLES = ("addresses", "users", "products", "promos", "orders", "order_items", "events")

# Written out rather than imported from the generator, so a changed header fails here.
EXPECTED_HEADERS = {
    "users": "user_id,first_name,last_name,email,phone_number,created_at,updated_at,address_id",
    "addresses": "address_id,address,zipcode,state,country",
    "orders": "order_id,user_id,promo_id,address_id,created_at,order_cost,shipping_cost,order_total,"
    "tracking_id,shipping_service,estimated_delivery_at,delivered_at,status",
    "order_items": "order_id,product_id,quantity",
    "products": "product_id,name,price,inventory",
    "promos": "promo_id,discount,status",
    "events": "event_id,session_id,user_id,page_url,created_at,event_type,order_id,product_id",
}

US_STATES = {
    "Alabama", "Alaska", "Arizona", "Arkansas", "California", "Colorado", "Connecticut", "Delaware",
    "District of Columbia", "Florida", "Georgia", "Hawaii", "Idaho", "Illinois", "Indiana", "Iowa", "Kansas",
    "Kentucky", "Louisiana", "Maine", "Maryland", "Massachusetts", "Michigan", "Minnesota", "Mississippi",
    "Missouri", "Montana", "Nebraska", "Nevada", "New Hampshire", "New Jersey", "New Mexico", "New York",
    "North Carolina", "North Dakota", "Ohio", "Oklahoma", "Oregon", "Pennsylvania", "Rhode Island",
    "South Carolina", "South Dakota", "Tennessee", "Texas", "Utah", "Vermont", "Virginia", "Washington",
    "West Virginia", "Wisconsin", "Wyoming",
}  # fmt: skip

TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
MONEY = re.compile(r"\d+(\.\d{1,2})?")
UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
START = dt.date(2021, 2, 10)


def read(out: Path, table: str) -> list[dict[str, str]]:
    with (out / f"{table}.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def ts(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")


def cents(text: str) -> int:
    return round(float(text) * 100)


class Dataset:
    """One generated directory, with its tables parsed once."""

    def __init__(self, out: Path, counts: dict[str, int]) -> None:
        self.out = out
        self.counts = counts
        self.tables = {table: read(out, table) for table in TABLES}

    def __getitem__(self, table: str) -> list[dict[str, str]]:
        return self.tables[table]

    def events_of(self, event_type: str) -> list[dict[str, str]]:
        return [e for e in self["events"] if e["event_type"] == event_type]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    out = tmp_path_factory.mktemp("scale1")
    return Dataset(out, generate(out, scale=1))


@pytest.fixture(scope="module")
def data3(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    out = tmp_path_factory.mktemp("scale3")
    return Dataset(out, generate(out, scale=3))


# --- determinism and file format ------------------------------------------------------------------


def test_same_inputs_give_byte_identical_files(tmp_path: Path) -> None:
    first = generate(tmp_path / "a", scale=0.5, seed=7)
    second = generate(tmp_path / "b", scale=0.5, seed=7)
    assert first == second
    for table in TABLES:
        name = f"{table}.csv"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_a_run_stopped_half_way_leaves_the_earlier_files_as_they_were(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Review: files written in place were truncated by a killed run, and load-raw took the partial set.
    generate(tmp_path, scale=0.5, seed=7)
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    write_order, written = generator._write_order, []

    def stop_after_some_orders(ctx: generator._Context, user_id: str, address_id: str) -> None:
        if len(written) == 50:
            raise KeyboardInterrupt  # as Ctrl-C would; SIGTERM's StopSignal is a BaseException too
        written.append(user_id)
        write_order(ctx, user_id, address_id)

    monkeypatch.setattr(generator, "_write_order", stop_after_some_orders)
    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path, scale=2, seed=8)
    assert written, "the run stopped before writing a row"
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before


@pytest.mark.parametrize("fail_at", [1, 2, 7, 14])
def test_an_error_while_moving_the_files_into_place_leaves_the_earlier_files_as_they_were(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_at: int
) -> None:
    """Review: the seven moves into place were outside the clean-up; a stop between two of them left three tables of
    the new seed beside four of the old, which load-raw takes as a set. An error at any move (a full disk) puts the
    earlier files back, a stale .previous of a killed run included (diff review: put back over the files in place)."""
    generate(tmp_path, scale=0.2, seed=7)
    (tmp_path / "orders.csv.previous").write_text("a killed run's earlier file\n")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if not p.name.endswith(".previous")}
    replace, moves = Path.replace, []

    def failing(self: Path, target):
        moves.append(self.name)
        if len(moves) == fail_at:
            raise OSError(28, "No space left on device")
        return replace(self, target)

    monkeypatch.setattr(Path, "replace", failing)
    with pytest.raises(OSError, match="No space left"):
        generate(tmp_path, scale=0.2, seed=8)
    monkeypatch.undo()
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before, moves


def test_a_stop_while_moving_the_files_into_place_waits_for_the_seven(tmp_path: Path, monkeypatch) -> None:
    """A Ctrl-C between two moves is acted on once the seven are in place: the new set whole, then the stop."""
    import os
    import signal

    generate(tmp_path / "new", scale=0.2, seed=8)
    generate(tmp_path / "here", scale=0.2, seed=7)
    replace, moves = Path.replace, []

    def stopped_on_the_way(self: Path, target):
        moves.append(self.name)
        if len(moves) == 5:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C
        return replace(self, target)

    from greenery.dev import stop_signals

    monkeypatch.setattr(Path, "replace", stopped_on_the_way)
    # As a terminal's `greenery generate` starts: Python's own SIGINT handler (CI's xdist worker had another, or a
    # deferral an earlier test of the worker left noted), nothing deferred yet.
    monkeypatch.setattr(stop_signals, "_handlers", {})
    monkeypatch.setattr(stop_signals, "_noted", [])
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])  # and not blocked
    try:
        with pytest.raises(KeyboardInterrupt):
            generate(tmp_path / "here", scale=0.2, seed=8)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        signal.signal(signal.SIGINT, previous)
    monkeypatch.undo()
    assert len(moves) == 14
    new = {p.name: p.read_bytes() for p in (tmp_path / "new").iterdir()}
    assert {p.name: p.read_bytes() for p in (tmp_path / "here").iterdir()} == new


def test_another_seed_gives_other_data(tmp_path: Path) -> None:
    generate(tmp_path / "a", scale=0.5, seed=7)
    generate(tmp_path / "b", scale=0.5, seed=8)
    for table in ("users", "orders", "events", "products"):
        name = f"{table}.csv"
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "b" / name).read_bytes(), name


def test_headers_and_line_endings(data: Dataset) -> None:
    for table, header in EXPECTED_HEADERS.items():
        raw = (data.out / f"{table}.csv").read_bytes()
        assert raw.split(b"\n", 1)[0].decode() == header, table
        assert b"\r" not in raw, f"{table}.csv must use LF line endings"
        assert raw.endswith(b"\n")


def test_returned_counts_are_the_rows_written(data: Dataset) -> None:
    assert data.counts == {table: len(data[table]) for table in TABLES}


def test_identifiers_are_version_4_uuids(data: Dataset) -> None:
    columns = {
        "users": "user_id", "orders": "order_id", "events": "event_id", "products": "product_id",
        "addresses": "address_id", "order_items": "order_id",
    }  # fmt: skip
    for table, column in [*columns.items(), ("events", "session_id"), ("orders", "tracking_id")]:
        assert all(UUID_TEXT.fullmatch(row[column]) for row in data[table] if row[column]), (table, column)


def test_uuid_helper_matches_the_standard_library() -> None:
    from greenery.dev.generator import _uuid4  # the fast path must not drift from uuid.UUID

    ours, theirs = random.Random(3), random.Random(3)  # noqa: S311
    for _ in range(200):
        assert _uuid4(ours) == str(uuid.UUID(int=theirs.getrandbits(128), version=4))


# --- volumes --------------------------------------------------------------------------------------


def test_scale_1_is_about_the_size_of_the_source(data: Dataset) -> None:
    counts = data.counts
    assert counts["users"] == 130
    assert counts["products"] == 30
    assert counts["promos"] == 6
    assert 350 <= counts["orders"] <= 372, "the source has 361 orders"
    assert 2.0 <= counts["order_items"] / counts["orders"] <= 2.8
    assert 3000 <= counts["events"] <= 4200
    assert 1.05 * counts["users"] <= counts["addresses"] <= 1.3 * counts["users"]
    sessions = {e["session_id"] for e in data["events"]}
    assert 480 <= len(sessions) <= 720


def test_row_counts_scale_linearly(data: Dataset, data3: Dataset) -> None:
    assert data3.counts["users"] == 3 * data.counts["users"]
    assert 2.9 <= data3.counts["orders"] / data.counts["orders"] <= 3.1
    for table in ("addresses", "orders", "order_items", "events"):
        assert 2.6 <= data3.counts[table] / data.counts[table] <= 3.4, table
    assert data3.counts["products"] == data.counts["products"]
    assert data3.counts["promos"] == data.counts["promos"]


# --- keys -----------------------------------------------------------------------------------------


def test_primary_keys_are_unique(data3: Dataset) -> None:
    keys = {
        "users": "user_id", "addresses": "address_id", "orders": "order_id", "products": "product_id",
        "promos": "promo_id", "events": "event_id",
    }  # fmt: skip
    for table, key in keys.items():
        values = [row[key] for row in data3[table]]
        assert all(values), f"{table}.{key} is never empty"
        assert len(set(values)) == len(values), f"{table}.{key} is unique"
    pairs = [(i["order_id"], i["product_id"]) for i in data3["order_items"]]
    assert len(set(pairs)) == len(pairs), "a product appears once per order"


def test_foreign_keys_resolve(data3: Dataset) -> None:
    def ids(table: str, column: str) -> set[str]:
        return {row[column] for row in data3[table]}

    users, addresses = ids("users", "user_id"), ids("addresses", "address_id")
    orders, products, promos = (
        ids("orders", "order_id"),
        ids("products", "product_id"),
        ids("promos", "promo_id"),
    )
    assert ids("users", "address_id") <= addresses
    assert ids("orders", "user_id") <= users
    assert ids("orders", "address_id") <= addresses
    assert ids("orders", "promo_id") - {""} <= promos
    assert ids("order_items", "order_id") == orders, "every order has items"
    assert ids("order_items", "product_id") <= products
    assert ids("events", "user_id") <= users
    assert ids("events", "product_id") - {""} <= products
    assert ids("events", "order_id") - {""} == orders


def test_orders_ship_mostly_to_the_users_own_address(data3: Dataset) -> None:
    home = {u["user_id"]: u["address_id"] for u in data3["users"]}
    share = sum(o["address_id"] == home[o["user_id"]] for o in data3["orders"]) / len(data3["orders"])
    assert 0.75 <= share < 1.0


def test_a_session_belongs_to_one_user(data3: Dataset) -> None:
    owners: dict[str, set[str]] = defaultdict(set)
    for event in data3["events"]:
        owners[event["session_id"]].add(event["user_id"])
    assert all(len(users) == 1 for users in owners.values())


# --- value formats --------------------------------------------------------------------------------


def test_timestamps_are_iso_utc(data: Dataset) -> None:
    columns = {
        "users": ("created_at", "updated_at"),
        "orders": ("created_at", "estimated_delivery_at", "delivered_at"),
        "events": ("created_at",),
    }
    for table, names in columns.items():
        for row in data[table]:
            for name in names:
                assert row[name] == "" or TIMESTAMP.fullmatch(row[name]), (table, name, row[name])
    for table in columns:
        assert all(row["created_at"] for row in data[table]), f"{table}.created_at is never empty"


def test_addresses_look_american(data: Dataset) -> None:
    zipcodes = [a["zipcode"] for a in data["addresses"]]
    assert all(len(z) == 5 and z.isdigit() for z in zipcodes)
    assert any(z.startswith("0") for z in zipcodes), "some zipcodes must keep a leading zero"
    assert {a["country"] for a in data["addresses"]} == {"United States"}
    assert {a["state"] for a in data["addresses"]} <= US_STATES
    assert all(re.fullmatch(r"\d+ \w.*", a["address"]) for a in data["addresses"])


def test_products_and_promos_catalogues(data: Dataset) -> None:
    products = data["products"]
    assert len({p["name"] for p in products}) == 30
    assert all(MONEY.fullmatch(p["price"]) and 10 <= float(p["price"]) <= 70 for p in products)
    assert all(0 <= int(p["inventory"]) <= 100 for p in products)
    promos = data["promos"]
    assert [p["status"] for p in promos].count("active") == 1
    assert {p["status"] for p in promos} == {"active", "inactive"}
    assert all(p["discount"].isdigit() and re.fullmatch(r"[\w -]+", p["promo_id"]) for p in promos)


def test_user_dates_are_consistent(data: Dataset) -> None:
    first_order: dict[str, dt.datetime] = {}
    for order in data["orders"]:
        created = ts(order["created_at"])
        first_order[order["user_id"]] = min(created, first_order.get(order["user_id"], created))
    for user in data["users"]:
        created, updated = ts(user["created_at"]), ts(user["updated_at"])
        assert created.year == 2020
        assert updated >= created
        if user["user_id"] in first_order:
            assert created < first_order[user["user_id"]]
    emails = [u["email"] for u in data["users"]]
    assert len(set(emails)) == len(emails)
    assert all(re.fullmatch(r"[a-z]+\d+@[a-z.]+", e) for e in emails)


# --- orders ---------------------------------------------------------------------------------------


def test_order_nulls_follow_status(data3: Dataset) -> None:
    by_status: dict[str, list[dict[str, str]]] = defaultdict(list)
    for order in data3["orders"]:
        by_status[order["status"]].append(order)
    assert set(by_status) == {"preparing", "shipped", "delivered"}
    for order in by_status["preparing"]:
        assert order["tracking_id"] == order["shipping_service"] == ""
        assert order["estimated_delivery_at"] == order["delivered_at"] == ""
    for order in by_status["shipped"]:
        assert order["tracking_id"]
        assert order["shipping_service"]
        assert order["delivered_at"] == ""
    for order in by_status["delivered"]:
        assert order["tracking_id"]
        assert order["shipping_service"]
        assert order["delivered_at"]
    shipped_or_delivered = by_status["shipped"] + by_status["delivered"]
    with_estimate = sum(bool(o["estimated_delivery_at"]) for o in shipped_or_delivered)
    assert 0.85 <= with_estimate / len(shipped_or_delivered) < 1.0, "estimates are mostly, not always, set"
    assert {o["shipping_service"] for o in shipped_or_delivered} == {"ups", "fedex", "usps", "dhl"}


def test_status_mix_resembles_the_source(data3: Dataset) -> None:
    shares = Counter(o["status"] for o in data3["orders"])
    total = len(data3["orders"])
    assert 0.78 <= shares["delivered"] / total <= 0.90
    assert 0.04 <= shares["shipped"] / total <= 0.13
    assert 0.04 <= shares["preparing"] / total <= 0.13


def test_delivery_dates_follow_the_order(data3: Dataset) -> None:
    for order in data3["orders"]:
        created = ts(order["created_at"])
        if order["delivered_at"]:
            assert dt.timedelta(days=1) <= ts(order["delivered_at"]) - created <= dt.timedelta(days=10)
        if order["estimated_delivery_at"]:
            assert ts(order["estimated_delivery_at"]) > created


def test_order_amounts_add_up(data3: Dataset) -> None:
    price = {p["product_id"]: cents(p["price"]) for p in data3["products"]}
    discount = {p["promo_id"]: int(p["discount"]) * 100 for p in data3["promos"]}
    cost: Counter[str] = Counter()
    for item in data3["order_items"]:
        assert 1 <= int(item["quantity"]) <= 5
        cost[item["order_id"]] += int(item["quantity"]) * price[item["product_id"]]
    for order in data3["orders"]:
        for column in ("order_cost", "shipping_cost", "order_total"):
            assert MONEY.fullmatch(order[column]), (column, order[column])
        order_cost, shipping = cents(order["order_cost"]), cents(order["shipping_cost"])
        assert order_cost == cost[order["order_id"]]
        assert 0 <= shipping <= 1000
        expected = max(0, order_cost + shipping - discount.get(order["promo_id"], 0))
        assert cents(order["order_total"]) == expected


def test_a_discount_never_makes_the_total_negative() -> None:
    from greenery.dev.generator import _order_total  # cheap orders are too rare to rely on them in the data

    assert _order_total(1050, 199, 2) == 1049
    assert _order_total(1050, 150, 20) == 0
    assert _order_total(1000, 0, 10) == 0


def test_items_and_promos_per_order(data3: Dataset) -> None:
    per_order = Counter(i["order_id"] for i in data3["order_items"])
    assert set(per_order.values()) <= {1, 2, 3, 4}
    assert 2.1 <= sum(per_order.values()) / len(per_order) <= 2.7
    with_promo = sum(bool(o["promo_id"]) for o in data3["orders"]) / len(data3["orders"])
    assert 0.06 <= with_promo <= 0.2


def test_most_users_buy_and_most_buyers_come_back(data3: Dataset) -> None:
    orders_per_user = Counter(o["user_id"] for o in data3["orders"])
    assert 0.88 <= len(orders_per_user) / len(data3["users"]) < 1.0
    repeat = sum(n >= 2 for n in orders_per_user.values()) / len(orders_per_user)
    assert 0.6 <= repeat <= 0.95


# --- events ---------------------------------------------------------------------------------------


def test_event_columns_follow_event_type(data: Dataset) -> None:
    for event in data["events"]:
        kind, order_id, product_id = event["event_type"], event["order_id"], event["product_id"]
        if kind in ("page_view", "add_to_cart"):
            assert order_id == ""
            assert product_id
            assert event["page_url"] == f"https://greenery.com/product/{product_id}"
        elif kind == "checkout":
            assert product_id == ""
            assert order_id
            assert event["page_url"] == f"https://greenery.com/checkout/{order_id}"
        else:
            assert kind == "package_shipped"
            assert product_id == ""
            assert order_id
            assert event["page_url"] == f"https://greenery.com/shipping/{order_id}"


def test_every_order_has_one_checkout_at_its_creation(data3: Dataset) -> None:
    checkouts: dict[str, list[dict[str, str]]] = defaultdict(list)
    for event in data3.events_of("checkout"):
        checkouts[event["order_id"]].append(event)
    for order in data3["orders"]:
        (checkout,) = checkouts[order["order_id"]]
        assert checkout["user_id"] == order["user_id"]
        lag = ts(order["created_at"]) - ts(checkout["created_at"])
        assert dt.timedelta(0) <= lag <= dt.timedelta(seconds=1)


def test_package_shipped_only_for_orders_on_their_way(data3: Dataset) -> None:
    shipped = {e["order_id"]: e for e in data3.events_of("package_shipped")}
    checkout = {e["order_id"]: e for e in data3.events_of("checkout")}
    assert len(shipped) == len(data3.events_of("package_shipped")), "one package_shipped per order"
    for order in data3["orders"]:
        event = shipped.get(order["order_id"])
        assert (event is not None) == (order["status"] in ("shipped", "delivered"))
        if event is not None:
            assert event["session_id"] == checkout[order["order_id"]]["session_id"]
            hours = (ts(event["created_at"]) - ts(order["created_at"])).total_seconds() / 3600
            assert 1 <= hours <= 12


def test_checkout_sessions_put_the_ordered_products_in_the_cart(data3: Dataset) -> None:
    sessions: dict[str, list[dict[str, str]]] = defaultdict(list)
    for event in data3["events"]:
        sessions[event["session_id"]].append(event)
    items: dict[str, set[str]] = defaultdict(set)
    for item in data3["order_items"]:
        items[item["order_id"]].add(item["product_id"])
    for checkout in data3.events_of("checkout"):
        events = sorted(sessions[checkout["session_id"]], key=lambda e: e["created_at"])
        before = [e for e in events if e["created_at"] <= checkout["created_at"] and e is not checkout]
        in_cart = {e["product_id"] for e in before if e["event_type"] == "add_to_cart"}
        viewed = {e["product_id"] for e in before if e["event_type"] == "page_view"}
        assert in_cart == items[checkout["order_id"]]
        assert in_cart <= viewed
        assert ts(checkout["created_at"]) - ts(events[0]["created_at"]) < dt.timedelta(hours=1)


def test_sessions_are_written_in_time_order(data3: Dataset) -> None:
    times: dict[str, list[str]] = defaultdict(list)
    for event in data3["events"]:
        times[event["session_id"]].append(event["created_at"])
    assert all(stamps == sorted(stamps) for stamps in times.values())


def test_browsing_sessions_have_only_product_events(data3: Dataset) -> None:
    kinds: dict[str, set[str]] = defaultdict(set)
    for event in data3["events"]:
        kinds[event["session_id"]].add(event["event_type"])
    browsing = [s for s, k in kinds.items() if "checkout" not in k]
    assert 0.25 <= len(browsing) / len(kinds) <= 0.5
    for session in browsing:
        assert kinds[session] <= {"page_view", "add_to_cart"}
        assert "page_view" in kinds[session]


def test_event_mix_resembles_the_source(data3: Dataset) -> None:
    mix = Counter(e["event_type"] for e in data3["events"])
    total = len(data3["events"])
    assert 0.47 <= mix["page_view"] / total <= 0.59
    assert 0.23 <= mix["add_to_cart"] / total <= 0.33
    assert 0.08 <= mix["checkout"] / total <= 0.12
    assert 0.07 <= mix["package_shipped"] / total <= 0.11


def test_product_funnel_converts_plausibly(data3: Dataset) -> None:
    viewed: dict[str, set[str]] = defaultdict(set)
    for event in data3.events_of("page_view"):
        viewed[event["product_id"]].add(event["session_id"])
    session_of_order = {e["order_id"]: e["session_id"] for e in data3.events_of("checkout")}
    bought: dict[str, set[str]] = defaultdict(set)
    for item in data3["order_items"]:
        bought[item["product_id"]].add(session_of_order[item["order_id"]])
    conversion = [len(bought[p]) / len(viewed[p]) for p in viewed]
    assert len(conversion) == 30
    assert 0.3 <= sum(conversion) / len(conversion) <= 0.7
    assert all(0.2 <= rate <= 0.8 for rate in conversion)


# --- activity window ------------------------------------------------------------------------------


def order_dates(out: Path) -> set[dt.date]:
    return {ts(o["created_at"]).date() for o in read(out, "orders")}


def test_days_argument_sets_the_order_history(tmp_path: Path) -> None:
    start = dt.date(2022, 3, 1)
    generate(tmp_path, scale=1, start=start, days=5)
    assert order_dates(tmp_path) == {start + dt.timedelta(days=d) for d in range(5)}
    events = read(tmp_path, "events")
    first_event = min(ts(e["created_at"]) for e in events)
    assert first_event >= dt.datetime(2022, 2, 28, 23, 0), "events live around the order window"


def test_default_history_grows_with_scale(data: Dataset, data3: Dataset) -> None:
    assert order_dates(data.out) == {START, START + dt.timedelta(days=1)}
    assert order_dates(data3.out) == {START + dt.timedelta(days=d) for d in range(6)}
    assert [default_days(s) for s in (0.1, 1, 1.5, 3, 100, 1000)] == [2, 2, 3, 6, 200, 365]


def test_recent_orders_are_more_often_still_open(tmp_path: Path) -> None:
    generate(tmp_path, scale=8, days=5)
    last_day = (START + dt.timedelta(days=4)).isoformat()
    still_open: dict[bool, list[bool]] = defaultdict(list)
    for order in read(tmp_path, "orders"):
        still_open[order["created_at"].startswith(last_day)].append(order["status"] != "delivered")
    recent, older = (sum(v) / len(v) for v in (still_open[True], still_open[False]))
    assert recent > older + 0.02


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"scale": 0}, "scale"), ({"scale": -1}, "scale"), ({"days": 0}, "days")]
)
def test_rejects_nonsense_arguments(tmp_path: Path, kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate(tmp_path, **kwargs)
    assert not list(tmp_path.iterdir()), "nothing is written for invalid arguments"
