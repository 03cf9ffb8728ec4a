"""Loading Greenery CSVs into raw: types, NULLs, mixed line endings, and clear errors that change nothing."""

from __future__ import annotations

import datetime as dt
import shutil
from decimal import Decimal

import pytest

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


def test_a_missing_or_renamed_column_is_reported(db, real_greenery, tmp_path):
    data = _copy_real(real_greenery, tmp_path)
    raw.load_dir(db, data)
    text = (data / "products.csv").read_text()
    (data / "products.csv").write_text(text.replace("product_id,name,", "product_id,product_name,", 1))
    with pytest.raises(raw.RawLoadError, match=r"missing \['name'\], unexpected \['product_name'\]"):
        raw.load_csv(db, data / "products.csv", "products")
    assert db.execute("select count(*) from raw.products").fetchone()[0] == 30


def test_a_missing_file_is_reported_before_anything_loads(db, real_greenery, tmp_path):
    data = _copy_real(real_greenery, tmp_path)
    (data / "promos.csv").unlink()
    with pytest.raises(raw.RawLoadError, match=r"missing promos\.csv"):
        raw.load_dir(db, data)
    assert db.execute("select to_regclass('raw.users')").fetchone()[0] is None


def test_an_empty_file_is_reported(db, tmp_path):
    (tmp_path / "users.csv").write_text("")
    with pytest.raises(raw.RawLoadError, match="empty file"):
        raw.load_csv(db, tmp_path / "users.csv", "users")
