"""Loading Greenery CSVs into raw: types, NULLs, mixed line endings, and clear errors that change nothing."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from helpers import may_log_in, roles, table_hash
from psycopg import sql

from greenery import warehouse
from greenery.sources import load as raw

pytestmark = pytest.mark.db

REAL_COUNTS = {
    "addresses": 150,
    "events": 3553,
    "order_items": 862,
    "orders": 361,
    "products": 30,
    "promos": 6,
    "users": 130,
}


def test_loads_the_real_dataset_with_types(db, real_greenery):
    assert raw.load_dir(db, real_greenery) == REAL_COUNTS
    # CRLF file (users) and the last line of promos.csv, which has no final newline, both arrive intact.
    assert db.execute("select count(*) from raw.users where email like '%\r%'").fetchone()[0] == 0
    assert db.execute("select promo_id, discount from raw.promos order by promo_id").fetchall()[0] == (
        "Digitized",
        Decimal("11"),
    )
    created, total, delivered = db.execute(
        "select created_at, order_total, delivered_at from raw.orders "
        "where order_id = '8329a65b-7ddf-4250-aeee-bd625f8a401a'"
    ).fetchone()
    assert created == dt.datetime(2021, 2, 11, 23, 30, 34, tzinfo=dt.UTC)
    assert total == Decimal("557.06") and delivered is not None
    # Empty fields are NULL, not empty strings.
    assert db.execute("select count(*) from raw.orders where promo_id = ''").fetchone()[0] == 0
    assert db.execute("select count(*) from raw.orders where promo_id is null").fetchone()[0] == 321
    zips = db.execute("select count(*) from raw.addresses where length(zipcode) <> 5").fetchone()[0]
    assert zips == 0


def _copy_real(real_greenery, tmp_path):
    target = tmp_path / "greenery"
    shutil.copytree(real_greenery, target)
    return target


def test_readers_see_the_old_raw_while_a_load_copies_never_wait_for_it_then_see_the_new(
    db, real_greenery, warehouse_url
):
    """README: a load fills new tables in a side schema and swaps them in at the end, in one transaction, "so readers
    wait only for the swap" (review: no test attacked it). The load is held mid-COPY (its rows come from a generator
    that waits); a reader with a 1 s lock_timeout reads raw.users then: no wait, the old rows only."""
    import threading

    raw.load_dir(db, real_greenery)
    rows = [dict(zip(raw.RAW_TABLES["users"], r, strict=True)) for r in db.execute("select * from raw.users")]
    mid_copy, go_on, failed = threading.Event(), threading.Event(), []

    def new_rows():
        for n, row in enumerate(rows):
            if n == len(rows) // 2:
                mid_copy.set()
                go_on.wait(60)
            yield {**row, "first_name": "Reloaded"}

    def load() -> None:
        try:
            with warehouse.connect() as conn:
                raw.load_rows(conn, "users", new_rows())
        except Exception as exc:
            failed.append(exc)

    loader = threading.Thread(target=load)
    loader.start()
    try:
        assert mid_copy.wait(30), failed
        with psycopg.connect(warehouse_url, autocommit=True) as reader:
            reader.execute("set lock_timeout = '1s'")  # a wait for the loader's locks would fail here
            seen = reader.execute("select count(*), count(*) filter (where first_name = 'Reloaded') from raw.users")
            assert seen.fetchone() == (len(rows), 0)
    finally:
        go_on.set()
        loader.join(60)
    assert not loader.is_alive() and failed == []
    after = db.execute("select count(*), count(*) filter (where first_name = 'Reloaded') from raw.users").fetchone()
    assert after == (len(rows), len(rows))


def test_a_bad_value_names_file_line_and_column_and_keeps_the_old_table(db, real_greenery, tmp_path):
    data = _copy_real(real_greenery, tmp_path)
    raw.load_dir(db, data)
    lines = (data / "orders.csv").read_text().splitlines()
    lines[5] = lines[5].replace("2021-02-", "2021-13-", 1)  # month 13 in the sixth line
    (data / "orders.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(raw.RawLoadError) as err:
        raw.load_csv(db, data / "orders.csv", "orders")
    message = str(err.value)
    assert "orders.csv" in message and "created_at" in message and "line 6" in message
    assert db.execute("select count(*) from raw.orders").fetchone()[0] == 361


@pytest.mark.parametrize("value", ["now", "yesterday", "03/04/2021 10:00", "Feb 10 2021"])
def test_a_timestamp_postgres_would_read_by_its_own_rules_is_refused(db, real_greenery, tmp_path, value):
    """Review: 'now' and 'yesterday' loaded as the load's own time and 03/04/2021 as the server's DateStyle says,
    then were published (a user created "now"). SOURCE.md: ISO-8601; anything else is refused, by line and column."""
    data = _copy_real(real_greenery, tmp_path)
    raw.load_dir(db, data)
    lines = (data / "users.csv").read_text().splitlines()
    fields = lines[2].split(",")
    fields[5] = value
    lines[2] = ",".join(fields)
    (data / "users.csv").write_text("\n".join(lines) + "\n")
    before = db.execute("select md5(string_agg(u::text, '' order by user_id)) from raw.users as u").fetchone()
    with pytest.raises(raw.RawLoadError) as err:
        raw.load_dir(db, data)
    assert str(err.value) == (
        f"{data / 'users.csv'}, line 3, column created_at: {value!r} is not an ISO-8601 timestamp"
        " (like 2021-02-10T14:03:00Z); nothing was changed"
    )
    assert db.execute("select md5(string_agg(u::text, '' order by user_id)) from raw.users as u").fetchone() == before


@pytest.mark.parametrize(
    ("file", "field", "value", "said"),
    [
        ("order_items.csv", 2, "0x10", "is not a whole number in decimal digits"),
        ("order_items.csv", 2, "1_0", "is not a whole number in decimal digits"),
        ("products.csv", 2, "0b11", "is not a decimal number (like 12.5)"),
        ("products.csv", 3, "4e1", "is not a whole number in decimal digits"),
    ],
)
def test_a_number_postgres_would_read_by_its_own_rules_is_refused(
    db, real_greenery, tmp_path, file, field, value, said
):
    """Review: PostgreSQL 16 reads 0x10 as 16, 0b11 as 3 and 1_0 as 10 into a number column: a typo loaded as a
    number nobody wrote. Decimal digits only, by line and column; the tables stay as they were."""
    data = _copy_real(real_greenery, tmp_path)
    raw.load_dir(db, data)
    lines = (data / file).read_text().splitlines()
    fields = lines[3].split(",")
    fields[field] = value
    lines[3] = ",".join(fields)
    (data / file).write_text("\n".join(lines) + "\n")
    table = file.removesuffix(".csv")
    column = list(raw.RAW_TABLES[table])[field]
    before = db.execute(f"select md5(string_agg(t::text, '' order by t::text)) from raw.{table} as t").fetchone()
    with pytest.raises(raw.RawLoadError) as err:
        raw.load_dir(db, data)
    assert str(err.value) == f"{data / file}, line 4, column {column}: {value!r} {said}; nothing was changed"
    after = db.execute(f"select md5(string_agg(t::text, '' order by t::text)) from raw.{table} as t").fetchone()
    assert after == before


def test_a_missing_or_renamed_column_is_reported(db, real_greenery, tmp_path):
    data = _copy_real(real_greenery, tmp_path)
    raw.load_dir(db, data)
    text = (data / "products.csv").read_text()
    (data / "products.csv").write_text(text.replace("product_id,name,", "product_id,product_name,", 1))
    with pytest.raises(raw.RawLoadError, match=r"missing \['name'\], unexpected \['product_name'\]"):
        raw.load_csv(db, data / "products.csv", "products")
    # Review: a column named twice read "missing none, unexpected none".
    (data / "products.csv").write_text(text.replace("product_id,name,", "product_id,name,name,", 1))
    with pytest.raises(raw.RawLoadError, match=r"line 1: header names name more than once; raw\.products has \["):
        raw.load_csv(db, data / "products.csv", "products")
    with pytest.raises(raw.RawLoadError, match=r"more than once; raw_next\.products has \["):  # not "raw." (review)
        raw.load_csv(db, data / "products.csv", "products", "raw_next")
    (data / "products.csv").write_text(text.replace("price,inventory", "price,price", 1))  # in another's place
    with pytest.raises(raw.RawLoadError, match=r"missing \['inventory'\], unexpected none; it names price more than"):
        raw.load_csv(db, data / "products.csv", "products")
    assert db.execute("select count(*) from raw.products").fetchone()[0] == 30
    # README: a header in the table's column order. Two columns of one type swapped, values and all, would load
    # each user's first name as the last (COPY goes by position): refused, raw as it was.
    before = db.execute("select md5(string_agg(t::text, '' order by t::text)) from raw.users as t").fetchone()
    users = [line.split(",") for line in (data / "users.csv").read_text().splitlines()]
    swapped = "\n".join(",".join([r[0], r[2], r[1], *r[3:]]) for r in users) + "\n"
    (data / "users.csv").write_text(swapped)
    in_order = r"users\.csv, line 1: header has raw\.users's columns in another order: \['user_id', 'first_name'"
    with pytest.raises(raw.RawLoadError, match=in_order):
        raw.load_csv(db, data / "users.csv", "users")
    after = db.execute("select md5(string_agg(t::text, '' order by t::text)) from raw.users as t").fetchone()
    assert after == before


def test_a_missing_file_is_reported_before_anything_loads(db, real_greenery, tmp_path):
    data = _copy_real(real_greenery, tmp_path)
    (data / "promos.csv").unlink()
    with pytest.raises(raw.RawLoadError, match=r"missing promos\.csv; nothing"):
        raw.load_dir(db, data)
    (data / "promos.csv").mkdir()  # review: a folder of that name was reported as missing, as if absent
    with pytest.raises(raw.RawLoadError, match=r"missing promos\.csv \(not a file\); nothing"):
        raw.load_dir(db, data)
    # Review: a mistyped folder read as seven missing files, and a CSV of no raw table was left out without a word.
    with pytest.raises(raw.RawLoadError, match=r"/no-such-folder: no such folder; nothing was changed$"):
        raw.load_dir(db, tmp_path / "no-such-folder")
    with pytest.raises(raw.RawLoadError, match=r"/users\.csv: not a folder; nothing was changed$"):
        raw.load_dir(db, data / "users.csv")
    (data / "promos.csv").rmdir()
    shutil.copy(real_greenery / "promos.csv", data / "promos.csv")
    (data / "order_item.csv").write_text("order_id,product_id,quantity\n")
    (data / "orders (1).csv").write_text("")
    assert _refusal(db, data) == (
        f"{data}: order_item.csv, orders (1).csv: not a raw table (the tables are addresses, users, promos, products,"
        " orders, order_items, events); nothing was changed"
    )
    assert db.execute("select to_regclass('raw.users')").fetchone()[0] is None


def _refusal(db, data, schema: str | None = None) -> str:
    """The error of loading the folder ``data`` (into ``schema``), which must be refused."""
    with pytest.raises(raw.RawLoadError) as refused:
        raw.load_dir(db, data, schema)
    return str(refused.value)


def test_a_csv_named_in_upper_case_is_refused_not_left_out(db, real_greenery, tmp_path):
    """Review: "orders (1).CSV" was left out without a word and the load reported success, while "orders (2).csv"
    was refused. A table is read from <table>.csv only, so "orders.CSV" is refused too, beside orders.csv or alone."""
    data = _copy_real(real_greenery, tmp_path)
    (data / "orders (1).CSV").write_text("")
    assert _refusal(db, data) == (
        f"{data}: orders (1).CSV: not a raw table (the tables are addresses, users, promos, products, orders,"
        " order_items, events); nothing was changed"
    )
    (data / "orders (1).CSV").unlink()
    shutil.copy(data / "orders.csv", data / "orders.CSV")
    recased = f"{data}: orders.CSV: not read, raw.orders is loaded from orders.csv (rename or remove it); nothing"
    assert _refusal(db, data) == f"{recased} was changed"
    # Loaded into another schema (load-raw --schema), the message names that schema's table (review: "raw.").
    assert _refusal(db, data, "raw_next") == f"{recased} was changed".replace("raw.orders", "raw_next.orders")
    (data / "orders.csv").unlink()
    assert _refusal(db, data) == f"{recased} was changed"
    assert db.execute("select to_regclass('raw.orders')").fetchone()[0] is None
    (data / "orders.CSV").rename(data / "orders.csv")
    assert raw.load_dir(db, data) == REAL_COUNTS


def test_an_empty_file_is_reported(db, tmp_path):
    (tmp_path / "users.csv").write_text("")
    with pytest.raises(raw.RawLoadError, match="empty file"):
        raw.load_csv(db, tmp_path / "users.csv", "users")


def test_a_header_without_rows_is_refused_unless_allowed_and_changes_nothing(db, real_greenery, tmp_path):
    """A truncated export (the header, no rows) emptied its raw table with exit 0: the loss showed only in the next
    run. Refused, naming the file and the table, every raw table as it was; --allow-empty loads it."""
    raw.load_dir(db, real_greenery)
    before = _raw_state(db)
    data = _copy_real(real_greenery, tmp_path)
    header = (data / "promos.csv").read_text(encoding="utf-8-sig").splitlines()[0]
    (data / "promos.csv").write_text(header + "\n")
    greenery = [str(Path(sys.executable).with_name("greenery")), "load-raw", str(data)]
    done = subprocess.run(greenery, capture_output=True, text=True, env=os.environ)
    assert done.returncode == 2, done.stderr
    assert f"error: {data / 'promos.csv'}: a header and no rows, which would empty raw.promos" in done.stderr
    assert _raw_state(db) == before
    done = subprocess.run([*greenery, "--allow-empty"], capture_output=True, text=True, env=os.environ)
    assert done.returncode == 0, done.stderr
    assert db.execute("select count(*) from raw.promos").fetchone()[0] == 0
    assert db.execute("select count(*) from raw.orders").fetchone()[0] == REAL_COUNTS["orders"]


# --- load_dir is all or nothing, and every error names the file and the line -------------------------

RAW_RELATIONS = [f"raw.{t}" for t in REAL_COUNTS]


def _raw_state(db) -> dict[str, str | None]:
    """Content digest of each raw table (None if absent): equal before and after means nothing changed."""
    return {
        r: table_hash(db, r) if db.execute("select to_regclass(%s)", (r,)).fetchone()[0] else None
        for r in RAW_RELATIONS
    }


def _changed_copy(real_greenery, tmp_path):
    """A copy of the real data whose six non-event tables each lose their last row: a load that replaced
    any of them would show in its hash."""
    data = _copy_real(real_greenery, tmp_path)
    for table in REAL_COUNTS:
        if table != "events":
            lines = (data / f"{table}.csv").read_bytes().splitlines(keepends=True)
            (data / f"{table}.csv").write_bytes(b"".join(lines[:-1]))
    return data


def _rewrite_line(path, number, edit) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    lines[number - 1] = edit(lines[number - 1])
    path.write_bytes(b"".join(lines))


def test_a_broken_last_line_of_events_changes_no_raw_table(db, real_greenery, tmp_path):
    raw.load_dir(db, real_greenery)
    before = _raw_state(db)
    data = _changed_copy(real_greenery, tmp_path)
    # events.csv is loaded last; its last line (3554: header + 3553 rows) gets month 13.
    _rewrite_line(data / "events.csv", 3554, lambda line: line.replace(b"2021-02-", b"2021-13-", 1))
    with pytest.raises(raw.RawLoadError) as err:
        raw.load_dir(db, data)
    assert _raw_state(db) == before
    message = str(err.value)
    assert "events.csv, line 3554" in message and "column created_at" in message, message
    assert "nothing was changed" in message, message
    assert db.execute("select count(*) from pg_namespace where nspname like 'raw%'").fetchone()[0] == 1
    # Fixed, the same copy loads, and its counts are the rows of the files.
    _rewrite_line(data / "events.csv", 3554, lambda line: line.replace(b"2021-13-", b"2021-02-", 1))
    assert raw.load_dir(db, data) == {t: n - (t != "events") for t, n in REAL_COUNTS.items()}


def test_a_failed_first_load_creates_no_raw_table(db, real_greenery, tmp_path):
    data = _copy_real(real_greenery, tmp_path)
    _rewrite_line(data / "events.csv", 3554, lambda line: line.replace(b"2021-02-", b"2021-13-", 1))
    with pytest.raises(raw.RawLoadError) as err:
        raw.load_dir(db, data)
    assert set(_raw_state(db).values()) == {None}  # not even the six tables before events
    assert "nothing was changed" in str(err.value)


def test_a_latin1_byte_names_file_line_and_changes_nothing(db, real_greenery, tmp_path):
    raw.load_dir(db, real_greenery)
    before = _raw_state(db)
    data = _changed_copy(real_greenery, tmp_path)
    # "Ren\xe9e": é as Latin-1 writes it, one byte that is not UTF-8, in column 2 (first_name) of line 2.
    _rewrite_line(data / "users.csv", 2, lambda line: line.replace(b",", b",Ren\xe9e ", 1))
    with pytest.raises(raw.RawLoadError) as err:
        raw.load_dir(db, data)
    message = str(err.value)
    assert "users.csv, line 2" in message and "(byte 0xe9, character " in message, message
    assert "not valid UTF-8" in message and "nothing was changed" in message, message
    assert _raw_state(db) == before


def test_the_cli_reports_a_load_error_in_one_line_and_exits_2(db, warehouse_url, real_greenery, tmp_path):
    raw.load_dir(db, real_greenery)
    before = _raw_state(db)
    data = _changed_copy(real_greenery, tmp_path)
    _rewrite_line(data / "users.csv", 2, lambda line: line.replace(b",", b",Ren\xe9e ", 1))
    greenery = Path(sys.executable).with_name("greenery")
    # warehouse_url put AIRFLOW_CONN_GREENERY_WAREHOUSE (this test's database) into the environment.
    done = subprocess.run([str(greenery), "load-raw", str(data)], capture_output=True, text=True, env=os.environ)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    # One line and nothing else (review: a log line per file read before it came first, "[info] read addresses ...").
    assert done.stderr.splitlines() == errors and len(errors) == 1, done.stderr
    assert "users.csv, line 2" in errors[0] and "not valid UTF-8" in errors[0], errors[0]
    assert _raw_state(db) == before


def test_a_malformed_csv_names_file_and_line(db, real_greenery, tmp_path):
    data = _copy_real(real_greenery, tmp_path)
    # A quote opened in line 3 that never closes: csv reads to the end of the file for its end.
    _rewrite_line(data / "products.csv", 3, lambda line: line.replace(b",", b',"', 1))
    with pytest.raises(raw.RawLoadError) as err:
        raw.load_dir(db, data)
    message = str(err.value)
    assert "products.csv, line 3" in message and "malformed CSV" in message, message
    assert "nothing was changed" in message, message


def test_a_row_with_the_wrong_number_of_fields_names_file_and_line(db, real_greenery, tmp_path):
    data = _copy_real(real_greenery, tmp_path)
    _rewrite_line(data / "orders.csv", 10, lambda line: line.rstrip(b"\r\n") + b",extra\n")
    with pytest.raises(raw.RawLoadError) as err:
        raw.load_dir(db, data)
    message = str(err.value)
    assert "orders.csv, line 10" in message and "14 fields, expected 13" in message, message
    assert "nothing was changed" in message, message


def _set_field(path, number, column, value) -> str:
    """Set one field of line ``number`` (a one-line record), keeping the line's ending; return the row's key."""
    with path.open(newline="") as handle:
        lines = handle.read().splitlines(keepends=True)
    ending = lines[number - 1][len(lines[number - 1].rstrip("\r\n")) :]
    fields = next(csv.reader([lines[number - 1]]))
    fields[column] = value
    out = io.StringIO()
    csv.writer(out, lineterminator=ending).writerow(fields)
    lines[number - 1] = out.getvalue()
    with path.open("w", newline="") as handle:
        handle.write("".join(lines))
    return fields[0]


def test_lines_are_counted_in_the_file_across_quoted_newlines(db, real_greenery, tmp_path):
    data = _copy_real(real_greenery, tmp_path)
    # Line 2 gets a first name spanning two lines, so the fifth record starts on line 7, not 6.
    _set_field(data / "users.csv", 2, 1, "Ann\nMarie")
    good = next(csv.reader([(data / "users.csv").read_text().splitlines()[6]]))[5]
    _set_field(data / "users.csv", 7, 5, "not a time")
    with pytest.raises(raw.RawLoadError, match=r"users\.csv, line 7, column created_at"):
        raw.load_dir(db, data)
    _set_field(data / "users.csv", 7, 5, good)
    raw.load_dir(db, data)
    names = db.execute("select first_name from raw.users where first_name like 'Ann%Marie'").fetchall()
    assert names == [("Ann\nMarie",)]


def test_a_quoted_fields_own_line_breaks_load_as_written(db, real_greenery, tmp_path):
    """Review: the file was read with universal newlines, which turned a CR (or CRLF) inside a quoted field into LF:
    the loaded value was not the file's. Records still end at CRLF or LF (the real files mix them)."""
    data = _copy_real(real_greenery, tmp_path)
    user_id = _set_field(data / "users.csv", 2, 1, "Bam\r\nboo\rX")
    assert raw.load_dir(db, data)["users"] == REAL_COUNTS["users"]
    assert db.execute("select first_name from raw.users where user_id = %s", (user_id,)).fetchone() == (
        "Bam\r\nboo\rX",
    )


def test_an_unreadable_file_is_one_error_naming_it_and_changes_nothing(db, real_greenery, tmp_path, monkeypatch):
    """Review: a file that cannot be opened (permissions) ended load-raw in a PermissionError traceback. The test
    runs as root, which reads any file: the open is made to fail as it would for another user."""
    data = _copy_real(real_greenery, tmp_path)
    raw.load_dir(db, data)
    before = _raw_state(db)
    opened = Path.open

    def refuse_products(self, *args, **kwargs):
        if self.name == "products.csv":
            raise PermissionError(13, "Permission denied", str(self))
        return opened(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refuse_products)
    with pytest.raises(raw.RawLoadError, match=r"products\.csv: cannot be read: Permission denied"):
        raw.load_dir(db, data)
    assert _raw_state(db) == before


def test_a_200_kib_field_loads(db, real_greenery, tmp_path):
    data = _copy_real(real_greenery, tmp_path)
    address_id = _set_field(data / "addresses.csv", 2, 1, "x" * (200 * 1024))
    assert raw.load_dir(db, data)["addresses"] == 150
    length = db.execute("select length(address) from raw.addresses where address_id = %s", (address_id,)).fetchone()
    assert length == (200 * 1024,)


NAIVE_USER = {"user_id": "u1", "created_at": "2021-02-10 12:00:00", "updated_at": "2021-02-10T12:00:00"}


def test_naive_timestamps_are_utc_whatever_the_database_time_zone(pg_admin_url, tmp_path):
    csv_file = tmp_path / "users.csv"
    header = ",".join(raw.RAW_TABLES["users"])
    csv_file.write_text(f"{header}\nu1,,,,,2021-02-10 12:00:00,2021-02-10T12:00:00,\n")
    noon_utc = dt.datetime(2021, 2, 10, 12, tzinfo=dt.UTC)
    stored = {}
    for zone in ("UTC", "America/New_York"):
        url = warehouse.create_database(pg_admin_url, f"greenery_test_{os.getpid()}_tz_{zone[:3].lower()}")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("alter database {} set timezone = {}").format(sql.Identifier(conn.info.dbname), zone))
        with psycopg.connect(url, autocommit=True) as conn:  # the new default applies to new sessions
            assert conn.execute("show timezone").fetchone()[0] == zone
            raw.load_csv(conn, csv_file, "users")
            from_csv = conn.execute("select created_at, updated_at from raw.users").fetchone()
            raw.load_rows(conn, "users", [NAIVE_USER])
            from_rows = conn.execute("select created_at, updated_at from raw.users").fetchone()
            assert conn.execute("show timezone").fetchone()[0] == zone  # the load's UTC did not leak
        stored[zone] = (from_csv, from_rows)
        assert from_csv == from_rows == (noon_utc, noon_utc), zone
    assert stored["UTC"] == stored["America/New_York"]


def test_a_new_database_compares_text_byte_by_byte(pg_admin_url, warehouse_url):
    """warehouse.NEW_DATABASE: locale C (faster sorts and joins on text ids), UTF-8 all the same."""
    url = warehouse.create_database(pg_admin_url, f"greenery_test_{os.getpid()}_locale")
    with psycopg.connect(url, autocommit=True) as conn:
        settings = conn.execute(
            "select datcollate, datctype, datlocprovider, pg_encoding_to_char(encoding) from pg_database"
            " where datname = current_database()"
        ).fetchone()
        assert settings == ("C", "C", "c", "UTF8")
        # lower() folds ASCII only under C (under C.UTF-8 it gives 'é'); characters stay whole in UTF-8.
        assert conn.execute("select 'Z' < 'a', lower('É'), length('é')").fetchone() == (True, "É", 1)
    with psycopg.connect(warehouse_url, autocommit=True) as conn:  # what every test's warehouse is
        assert conn.execute("select datcollate from pg_database where datname = current_database()").fetchone() == (
            "C",
        )


def test_orders_may_lag_one_day_behind_the_run_but_not_two(published_url):
    """README (Safe runs: source freshness): ``raw.orders`` must have rows within the day before the run's
    day (the shop's orders stop before its last shipping events); older than that, the run stops naming it."""
    from greenery.project.render import Interval
    from greenery.sources import freshness

    day = Interval.for_day(dt.date(2021, 2, 12))
    with psycopg.connect(published_url, autocommit=True) as conn:
        conn.execute("delete from raw.orders where created_at >= '2021-02-12'")
        assert freshness.check(conn, day) == []
        conn.execute("delete from raw.orders where created_at >= '2021-02-11'")
        [problem] = freshness.check(conn, day)
    assert (problem.table, problem.problem) == ("orders", "stale")
    assert problem.detail.startswith(
        "raw.orders has no rows created in [2021-02-11, 2021-02-13); the newest is 2021-02-10"
    )


def test_rows_in_the_future_of_the_clock_do_not_make_a_day_fresh(published_url):
    """Review: a run of a day in the future passed the source check on rows it then quarantined as
    future_timestamp, and published an empty day that `greenery answers` reported "as of". Rows after the
    clock (plus its hour of skew) do not count; the same rows count once the clock has passed them."""
    from greenery.project.render import Interval
    from greenery.sources import freshness

    day = Interval.for_day(dt.date(2021, 3, 1))
    with psycopg.connect(published_url, autocommit=True) as conn:
        for table in ("events", "orders"):
            conn.execute(
                f"insert into raw.{table} select * from raw.{table} where ctid = (select min(ctid) from raw.{table})"
            )
            conn.execute(
                f"update raw.{table} set created_at = '2021-03-01T12:00:00Z'"
                f" where ctid = (select max(ctid) from raw.{table})"
            )
        at_nine = dt.datetime(2021, 3, 1, 9, tzinfo=dt.UTC)
        problems = freshness.check(conn, day, now=at_nine)
        assert sorted((p.table, p.problem) for p in problems) == [("events", "stale"), ("orders", "stale")]
        assert all("are in the future" in p.detail for p in problems), problems
        assert freshness.check(conn, day, now=at_nine + dt.timedelta(hours=3)) == []
        assert freshness.check(conn, day) == []  # today's clock: long after


def test_a_whole_number_column_turned_fractional_stops_the_run_instead_of_being_rounded(published_url):
    """Review: raw.order_items.quantity changed to numeric was cast to integer by staging: 1.5 became 2, 2.4
    became 2, the marts' units and totals wrong and the run green. The source check names the column now."""
    from greenery.project.render import Interval
    from greenery.sources import freshness

    day = Interval.for_day(dt.date(2021, 2, 12))
    with psycopg.connect(published_url, autocommit=True) as conn:
        conn.execute("alter table raw.order_items alter column quantity type double precision")
        assert freshness.check(conn, day) == []  # whole numbers only: the cast loses nothing
        conn.execute(
            "update raw.order_items set quantity = quantity + 0.5 where ctid = (select min(ctid) from raw.order_items)"
        )
        [problem] = freshness.check(conn, day)
        assert (problem.table, problem.problem) == ("order_items", "columns")
        assert "raw.order_items: quantity is double precision with 1 value(s) that are not whole" in problem.detail


@pytest.mark.parametrize(
    ("column_type", "value", "said"),
    [
        ("numeric", "'NaN'", "1 value(s) that are not numbers (NaN, Infinity)"),
        ("double precision", "'-Infinity'", "1 value(s) that are not numbers (NaN, Infinity)"),
        ("numeric", "1e10", "1 value(s) beyond integer's range (2147483647)"),
        ("bigint", "3000000000", "1 value(s) beyond integer's range (2147483647)"),
        ("bigint", "-2147483648", None),  # integer's least value: fits
    ],
    ids=["NaN", "-Infinity", "1e10", "bigint beyond integer", "integer's least"],
)
def test_a_whole_number_the_cast_to_integer_would_fail_on_stops_the_run_naming_it(
    published_url, column_type, value, said
):
    """Review: quantity as numeric holding NaN, Infinity or 1e10, or as bigint holding 3000000000, passed the source
    check (``NaN <> trunc(NaN)`` is false) and failed stg_postgres__order_items on "cannot convert NaN to integer" or
    "integer out of range", retried, paged with PostgreSQL's words."""
    from greenery.project.render import Interval
    from greenery.sources import freshness

    day = Interval.for_day(dt.date(2021, 2, 12))
    with psycopg.connect(published_url, autocommit=True) as conn:
        conn.execute(f"alter table raw.order_items alter column quantity type {column_type}")
        conn.execute(
            f"update raw.order_items set quantity = {value} where ctid = (select min(ctid) from raw.order_items)"
        )
        problems = freshness.check(conn, day)
    if said is None:
        assert problems == []
        return
    [problem] = problems
    assert (problem.table, problem.problem) == ("order_items", "columns")
    assert problem.detail == (
        f"raw.order_items: quantity is {column_type} with {said}: staging's cast to integer would round them (1.5"
        " becomes 2) or fail on them; fix the values or the column's type"
    )


@pytest.mark.parametrize(
    ("alter", "named"),
    [
        ("alter table raw.orders alter column delivered_at type text", "delivered_at is text (expected timestamptz)"),
        ("alter table raw.users alter column updated_at type text", "updated_at is text (expected timestamptz)"),
        ("alter table raw.order_items alter column quantity type text", "quantity is text (expected integer)"),
        ("alter table raw.products alter column price type text", "price is text (expected numeric)"),
    ],
    ids=["timestamp", "another table's timestamp", "whole number", "number"],
)
def test_a_timestamp_or_number_column_turned_to_text_stops_the_run_naming_it(published_url, alter, named):
    """Review: raw columns altered to text passed every check, and staging read 'yesterday' from the clock and
    '02/14/2021 10:00' by the server's DateStyle into published orders. Text values are not guessed at: the source
    check names the column, its type and the one expected, before anything is built. Timestamps without a zone are
    still read (a type, not a guess); ids are text anyway."""
    from greenery.project.render import Interval
    from greenery.sources import freshness

    day = Interval.for_day(dt.date(2021, 2, 12))
    with psycopg.connect(published_url, autocommit=True) as conn:
        conn.execute("alter table raw.orders alter column delivered_at type timestamp without time zone")
        assert freshness.check(conn, day) == []
        # Creation times without a zone too (review: their max() came back naive and crashed the check): read as UTC.
        conn.execute("set timezone = 'UTC'")
        for table in ("orders", "events"):
            conn.execute(f"alter table raw.{table} alter column created_at type timestamp without time zone")
        conn.execute("set timezone = 'America/New_York'")  # the caller's zone is not the data's
        assert freshness.check(conn, day) == []
        late = [p for p in freshness.check(conn, Interval.for_day(dt.date(2021, 3, 1))) if p.table == "events"]
        assert [p.problem for p in late] == ["stale"] and "the newest is 2021-02-12" in late[0].detail, late
        assert conn.execute("show timezone").fetchone()[0] == "America/New_York"  # the caller's session as it was
        after = dt.datetime(2021, 2, 11, 12, tzinfo=dt.UTC)
        hour = "created_at > '2021-02-11 12:00' and created_at < '2021-02-11 13:00'"
        utc = f"select count(*) from raw.events where {hour}"
        expected = conn.execute(utc).fetchone()[0]
        assert freshness.rows_created_between(conn, "events", after, after + dt.timedelta(hours=1)) == expected > 0
        conn.execute(alter)
        [problem] = freshness.check(conn, day)
        assert problem.problem == "columns" and named in problem.detail, problem
        assert problem.detail.startswith(f"raw.{alter.split()[2].split('.')[1]}: "), problem


# --- a load keeps the owner and the grants of the tables it replaces ----------------------------------


def _acls(conn) -> dict[str, tuple]:
    """Each raw table's oid, owner, and ACL entries of the table and of its columns, by role name."""
    acls = {}
    for table in REAL_COUNTS:
        oid, owner = conn.execute(
            "select oid, pg_get_userbyid(relowner) from pg_class where oid = %s::regclass", (f"raw.{table}",)
        ).fetchone()
        entries = conn.execute(
            "select '', pg_get_userbyid(a.grantor), coalesce(nullif(a.grantee, 0)::regrole::text, 'public'),"
            "  a.privilege_type, a.is_grantable"
            " from pg_class c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a where c.oid = %(oid)s"
            " union all"
            " select t.attname, pg_get_userbyid(a.grantor), coalesce(nullif(a.grantee, 0)::regrole::text, 'public'),"
            "  a.privilege_type, a.is_grantable"
            " from pg_attribute t, aclexplode(t.attacl) a where t.attrelid = %(oid)s and t.attnum > 0",
            {"oid": oid},
        ).fetchall()
        acls[table] = (oid, owner, sorted(entries))
    return acls


def test_a_load_keeps_the_owner_and_every_grant_of_the_tables_it_replaces(db, real_greenery):
    """Review: a load replaced each raw table and dropped its grants: the pipeline's role (README: select on the
    seven tables) could not read raw after the owner's next load. Kept exactly: grants to several roles, of
    several privileges, a column's, PUBLIC's, one made with a grant option by its holder, and the owner; the
    new table's default privileges (ALTER DEFAULT PRIVILEGES) do not add to them."""
    raw.load_dir(db, real_greenery)
    with roles(db, "etl", "writer", "owner", "delegate") as (etl, writer, owner, delegate):
        etl_, writer_, owner_, delegate_ = map(sql.Identifier, (etl, writer, owner, delegate))
        for statement in (
            sql.SQL("grant usage on schema raw to {}, {}").format(etl_, delegate_),
            sql.SQL("grant select on all tables in schema raw to {}").format(etl_),
            sql.SQL("grant insert, update on raw.orders to {}").format(writer_),
            sql.SQL("grant select (order_id, status) on raw.orders to {} with grant option").format(writer_),
            sql.SQL("grant select on raw.promos to public"),
            sql.SQL("alter table raw.products owner to {}").format(owner_),
            sql.SQL("grant select, truncate on raw.products to {} with grant option").format(delegate_),
            sql.SQL("set role {}").format(delegate_),
            sql.SQL("grant select on raw.products to {}").format(writer_),  # granted by delegate, not the owner
            sql.SQL("reset role"),
            sql.SQL("alter default privileges grant delete on tables to {}").format(writer_),
        ):
            db.execute(statement)
        before = _acls(db)
        assert ("", delegate, writer, "SELECT", False) in before["products"][2]  # the set-up is what it says
        assert raw.load_dir(db, real_greenery) == REAL_COUNTS
        after = _acls(db)
        assert all(after[t][0] != before[t][0] for t in REAL_COUNTS)  # each table was replaced
        assert {t: a[1:] for t, a in after.items()} == {t: b[1:] for t, b in before.items()}
        assert db.execute("select current_user").fetchone()[0] not in (owner, delegate)  # the load's roles undone
        readable = (
            "select has_table_privilege(%s, 'raw.orders', 'select'), has_table_privilege(%s, 'raw.users', 'delete')"
        )
        assert db.execute(readable, (etl, writer)).fetchone() == (True, False)


def test_a_grant_the_load_cannot_make_again_stops_it_and_changes_nothing(db, warehouse_url, real_greenery):
    """A grant made by a role the loading role cannot act as (it is no superuser, nor a member of that role) cannot
    be made again exactly: the load, by the tables' owner, stops naming the table and the grantor, and raw keeps
    its tables and grants."""
    with roles(db, "loader", "delegate", "reader") as (loader, delegate, reader):
        loader_, delegate_, reader_ = map(sql.Identifier, (loader, delegate, reader))
        password = may_log_in(db, loader)
        db.execute(sql.SQL("grant create on database {} to {}").format(sql.Identifier(db.info.dbname), loader_))
        db.execute("create schema raw")
        db.execute(sql.SQL("grant usage, create on schema raw to {}").format(loader_))
        db.execute(sql.SQL("grant usage on schema raw to {}, {}").format(delegate_, reader_))
        with psycopg.connect(warehouse_url, user=loader, password=password, autocommit=True) as conn:
            raw.load_dir(conn, real_greenery)
            conn.execute(sql.SQL("grant select on raw.orders to {} with grant option").format(delegate_))
            db.execute(sql.SQL("set role {}").format(delegate_))
            db.execute(sql.SQL("grant select on raw.orders to {}").format(reader_))
            db.execute("reset role")
            before = _acls(db), _raw_state(db)
            with pytest.raises(raw.RawLoadError) as err:
                raw.load_dir(conn, real_greenery)
        assert str(err.value) == (
            f"replacing the tables of raw: raw.orders: cannot act as role {delegate}, to keep its grants:"
            f' permission denied to set role "{delegate}"; nothing was changed'
        )
        assert (_acls(db), _raw_state(db)) == before


def test_a_loader_without_create_on_the_database_is_one_line_naming_what_to_grant(db, warehouse_url, real_greenery):
    """Review: a role without CREATE on the database ended load-raw in InsufficientPrivilege's traceback (making the
    side schema raw__loading), where the swap's own errors were already one line."""
    with roles(db, "loader") as (loader,):
        password = may_log_in(db, loader)
        before = _raw_state(db)
        with (
            psycopg.connect(warehouse_url, user=loader, password=password, autocommit=True) as conn,
            pytest.raises(raw.RawLoadError) as err,
        ):
            raw.load_dir(conn, real_greenery)
        assert str(err.value) == (
            f"preparing the tables of raw: permission denied for database {db.info.dbname}"
            " (the loading role needs CREATE on the database, to make the side schema raw__loading);"
            " nothing was changed"
        )
        assert _raw_state(db) == before


def test_a_loader_in_the_owners_role_keeps_the_owners_grants_as_the_owners(db, warehouse_url, real_greenery):
    """Review: a loader that is a member of the tables' owner role and holds a grant option from it: once that grant
    was made again, PostgreSQL recorded the owner's later grants as the loader's, and the load refused itself."""
    with roles(db, "owner", "loader", "reader") as (owner, loader, reader):
        owner_, loader_, reader_ = map(sql.Identifier, (owner, loader, reader))
        password = may_log_in(db, loader)
        db.execute(sql.SQL("grant {} to {}").format(owner_, loader_))
        db.execute(sql.SQL("grant create on database {} to {}").format(sql.Identifier(db.info.dbname), loader_))
        db.execute(sql.SQL("create schema raw authorization {}").format(owner_))
        with psycopg.connect(warehouse_url, user=loader, password=password, autocommit=True) as conn:
            raw.load_dir(conn, real_greenery)
            for table in REAL_COUNTS:
                db.execute(sql.SQL("alter table {} owner to {}").format(sql.Identifier("raw", table), owner_))
            db.execute(sql.SQL("set role {}").format(owner_))
            db.execute(sql.SQL("grant select on raw.orders to {} with grant option").format(loader_))
            db.execute(sql.SQL("grant select on raw.orders to {}").format(reader_))
            db.execute("reset role")
            before = _acls(db)
            assert ("", owner, reader, "SELECT", False) in before["orders"][2]  # the set-up is what it says
            assert raw.load_dir(conn, real_greenery) == REAL_COUNTS
        after = _acls(db)
        assert {t: a[1:] for t, a in after.items()} == {t: b[1:] for t, b in before.items()}


def test_the_source_check_task_names_a_table_the_role_cannot_read_though_it_fingerprints_raw_first(
    published_url, monkeypatch
):
    """Self-review: the task fingerprints raw before its check (a change during the check is then refused), and the
    fingerprint's count of a table the role cannot read failed the task on PostgreSQL's bare "permission denied"
    before the check could name the table, the role and the grant."""
    import json

    from greenery.sources import freshness
    from greenery.tasks import freshness as freshness_task

    with psycopg.connect(published_url, autocommit=True) as conn, roles(conn, "etl") as (etl,):
        etl_ = sql.Identifier(etl)
        password = may_log_in(conn, etl)
        conn.execute(sql.SQL("grant usage on schema raw to {}").format(etl_))
        conn.execute(sql.SQL("grant select on all tables in schema raw to {}").format(etl_))
        conn.execute(sql.SQL("revoke select on raw.users from {}").format(etl_))
        as_etl = {**json.loads(warehouse.connection_json(published_url)), "login": etl, "password": password}
        monkeypatch.setenv(warehouse.conn_env_var(), json.dumps(as_etl))
        monkeypatch.delenv("AIRFLOW_CONN_SLACK_ALERTS", raising=False)
        context = {"run_id": "unreadable", "logical_date": dt.datetime(2021, 2, 12, tzinfo=dt.UTC)}
        with pytest.raises(freshness.SourceNotReadyError) as refused:
            freshness_task.check(context)
    assert f"raw.users exists but is not readable by role {etl}: it lacks select on it" in str(refused.value)


def test_the_source_check_tells_a_table_the_role_cannot_read_from_a_missing_one(published_url, real_greenery):
    """Review: information_schema hides the tables a role cannot read, so the run paged "raw.orders does not exist"
    for a table that was there without the role's grant. Now: the table, the role and the privilege it lacks; and
    the owner's load keeps the role's grants, so the repro of the review (grant, load, run) is fresh."""
    from greenery.project.render import Interval
    from greenery.sources import freshness

    day = Interval.for_day(dt.date(2021, 2, 12))
    with psycopg.connect(published_url, autocommit=True) as conn, roles(conn, "etl") as (etl,):
        etl_ = sql.Identifier(etl)
        conn.execute(sql.SQL("grant usage on schema raw to {}").format(etl_))
        conn.execute(sql.SQL("grant select on all tables in schema raw to {}").format(etl_))
        raw.load_dir(conn, real_greenery)  # by the owner
        conn.execute(sql.SQL("set role {}").format(etl_))
        assert freshness.check(conn, day) == []
        conn.execute("reset role")
        conn.execute(sql.SQL("revoke select on raw.orders from {}").format(etl_))
        conn.execute(sql.SQL("grant select (order_id, created_at) on raw.orders to {}").format(etl_))
        conn.execute(sql.SQL("revoke select on raw.users from {}").format(etl_))
        conn.execute("drop table raw.promos")
        conn.execute(sql.SQL("set role {}").format(etl_))
        problems = {p.table: (p.problem, p.detail) for p in freshness.check(conn, day)}
        assert problems == {
            "users": (
                "unreadable",
                f"raw.users exists but is not readable by role {etl}: it lacks select on it"
                f" (grant select on raw.users to {etl})",
            ),
            "promos": ("missing", "raw.promos does not exist"),
            "orders": (
                "unreadable",
                f"raw.orders exists but is not readable by role {etl}: it lacks select on column(s) user_id,"
                " promo_id, address_id, order_cost, shipping_cost, order_total, tracking_id, shipping_service,"
                " estimated_delivery_at, delivered_at, status of raw.orders",
            ),
        }
        conn.execute("reset role")
        conn.execute(sql.SQL("revoke usage on schema raw from {}").format(etl_))
        conn.execute(sql.SQL("set role {}").format(etl_))
        details = {p.detail for p in freshness.check(conn, day) if p.table != "promos"}
        assert details == {
            f"raw.{t} exists but is not readable by role {etl}: it lacks usage on schema raw"
            f" (grant usage on schema raw to {etl})"
            for t in REAL_COUNTS
            if t != "promos"
        }
