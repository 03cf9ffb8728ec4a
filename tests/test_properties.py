"""Property-based: mutate the real Greenery raw rows at random and check the pipeline's invariants.

Each example copies the database where the real data's run of 2021-02-12 is published, applies one to
three mutations (duplicates, orphans, NaN/Infinity, far dates, hostile strings, NULLs, deleted parents,
text in a number column) and runs the DAG's task bodies for the day (a full build, real GX validation,
publish unless blocked). Then, whatever happened:

1. either the run published and the published tables pass an independent oracle of the critical rules
   (keys unique and not null, relationships, money arithmetic), or every published and quarantine
   table is byte-identical to before;
2. no NaN/Infinity and no infinite or absurd timestamp in any published model;
3. every raw row is in a staging model or in ``quarantine.*`` with a rule (when the run published);
4. the alert matches the outcome: 🔴 for a blocked or failed run, 🟡 for warnings or quarantine, no
   alert when nothing failed.

GREENERY_PROPERTY_EXAMPLES sets the number of examples (default 6 in ``make test``; the closing note of
issue 11 quotes a run with more).
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
from contextlib import contextmanager

import psycopg
import pytest
from helpers import hashes, run_day_through_the_tasks
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from greenery import warehouse
from greenery.alerts import messages
from greenery.project import models
from greenery.sources.schema import RAW_TABLES

pytestmark = [pytest.mark.db, pytest.mark.integration]

DAY = dt.date(2021, 2, 12)
MODELS = models.discover()
EXAMPLES = int(os.environ.get("GREENERY_PROPERTY_EXAMPLES", "6"))
KEYS = {
    "users": ("user_id",),
    "addresses": ("address_id",),
    "promos": ("promo_id",),
    "products": ("product_id",),
    "orders": ("order_id",),
    "order_items": ("order_id", "product_id"),
    "events": ("event_id",),
}
# Which staging model each raw table feeds (1:1).
STAGING = {table: f"stg_postgres__{table}" for table in RAW_TABLES}
# PostgreSQL text cannot hold NUL at all, so no NUL here; the rest is fair game.
HOSTILE = ["<img src=x onerror=alert(1)>", "'; drop table raw.users; --", "\u202e right-to-left", "ü" * 300, "NaN"]
_names = itertools.count(1)


def columns_of(table: str, types: tuple[str, ...]) -> list[str]:
    return [c for c, t in RAW_TABLES[table].items() if t in types]


@st.composite
def mutation(draw) -> str:
    """One SQL statement that damages raw, aimed at a row picked by its position."""
    table = draw(st.sampled_from(sorted(RAW_TABLES)))
    row = draw(st.integers(min_value=0, max_value=25))
    pick = f"(select ctid from raw.{table} order by ctid offset {row} limit 1)"
    kinds = ["duplicate", "null"]
    if columns_of(table, ("numeric",)):
        kinds.append("non_finite")
    if columns_of(table, ("timestamptz",)):
        kinds.append("far_date")
    if any(c.endswith("_id") for c in RAW_TABLES[table]):
        kinds.append("orphan")
    kinds += ["hostile", "delete"]
    if columns_of(table, ("integer",)):
        kinds.append("text_in_number")
    kind = draw(st.sampled_from(kinds))
    if kind == "duplicate":
        return f"insert into raw.{table} select * from raw.{table} where ctid = {pick}"
    if kind == "delete":
        return f"delete from raw.{table} where ctid = {pick}"
    if kind == "null":
        column = draw(st.sampled_from(sorted(RAW_TABLES[table])))
        return f"update raw.{table} set {column} = null where ctid = {pick}"
    if kind == "non_finite":
        column = draw(st.sampled_from(columns_of(table, ("numeric",))))
        value = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e15", "-0.001"]))
        return f"update raw.{table} set {column} = '{value}' where ctid = {pick}"
    if kind == "far_date":
        column = draw(st.sampled_from(columns_of(table, ("timestamptz",))))
        value = draw(st.sampled_from(["infinity", "-infinity", "1800-01-01Z", "2300-01-01Z", "2099-12-31Z"]))
        return f"update raw.{table} set {column} = '{value}' where ctid = {pick}"
    if kind == "orphan":
        column = draw(st.sampled_from([c for c in RAW_TABLES[table] if c.endswith("_id")]))
        return f"update raw.{table} set {column} = gen_random_uuid()::text where ctid = {pick}"
    if kind == "hostile":
        column = draw(st.sampled_from(columns_of(table, ("text",))))
        value = draw(st.sampled_from(HOSTILE)).replace("'", "''")
        return f"update raw.{table} set {column} = '{value}' where ctid = {pick}"
    column = draw(st.sampled_from(columns_of(table, ("integer",))))
    return (
        f"alter table raw.{table} alter column {column} type text;"
        f" update raw.{table} set {column} = 'two' where ctid = {pick}"
    )


@contextmanager
def warehouse_at(url: str):
    """Point the Airflow connection at ``url`` for the task bodies (Hypothesis examples outlive fixtures)."""
    var = warehouse.conn_env_var()
    old = os.environ.get(var)
    os.environ[var] = warehouse.connection_json(url)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = old


def frozen(conn) -> dict[str, str]:
    """Content hashes of every published model and quarantine table."""
    tables = [m.relation for m in MODELS.values()]
    tables += [
        f"quarantine.{name}"
        for (name,) in conn.execute(
            "select table_name from information_schema.tables where table_schema = 'quarantine'"
        ).fetchall()
    ]
    return hashes(conn, tables)


def oracle(conn) -> list[str]:
    """Critical rules checked in plain SQL, independently of the suites. Returns what is broken."""
    broken = []
    for m in MODELS.values():
        key = m.table_key
        cols = ", ".join(key)
        nulls = " or ".join(f"{k} is null" for k in key)
        bad = conn.execute(
            f"select (select count(*) from {m.relation} where {nulls})"
            f" + (select count(*) from (select {cols} from {m.relation} group by {cols} having count(*) > 1) d)"
        ).fetchone()[0]
        if bad:
            broken.append(f"{m.relation}: key {cols} not unique or null ({bad})")
    relationships = [
        ("marts.fact_orders", "user_id", "marts.dim_users", "user_id"),
        ("marts.fact_order_items", "order_id", "marts.fact_orders", "order_id"),
        ("marts.fact_order_items", "product_id", "marts.dim_products", "product_id"),
        ("marts.fact_user_orders", "user_id", "marts.dim_users", "user_id"),
    ]
    for child, fk, parent, pk in relationships:
        n = conn.execute(
            f"select count(*) from {child} c where c.{fk} is not null"
            f" and not exists (select from {parent} p where p.{pk} = c.{fk})"
        ).fetchone()[0]
        if n:
            broken.append(f"{child}.{fk}: {n} without {parent}")
    n = conn.execute(
        "select count(*) from marts.fact_orders"
        " where abs(order_total - greatest(order_cost + shipping_cost - discount, 0)) > 0.01"
    ).fetchone()[0]
    if n:
        broken.append(f"marts.fact_orders: {n} totals not cost + shipping - discount")
    return broken


def absurd_values(conn) -> list[str]:
    found = []
    for m in MODELS.values():
        for column, data_type in conn.execute(
            "select column_name, data_type from information_schema.columns where table_schema = %s and table_name = %s",
            (m.layer, m.name),
        ).fetchall():
            if data_type in ("numeric", "double precision", "real"):
                test = f"{column} in ('NaN', 'Infinity', '-Infinity')"
            elif data_type.startswith("timestamp"):
                test = f"not isfinite({column}) or {column} not between '2000-01-01' and '2100-01-01'"
            else:
                continue
            if conn.execute(f"select exists (select from {m.relation} where {test})").fetchone()[0]:
                found.append(f"{m.relation}.{column}")
    return found


def lost_rows(conn, run_id: str) -> list[str]:
    """Raw rows neither in their staging model nor quarantined by this run (counts per table)."""
    lost = []
    for table, model in STAGING.items():
        raw_n = conn.execute(f"select count(*) from raw.{table}").fetchone()[0]
        kept = conn.execute(f"select count(*) from staging.{model}").fetchone()[0]
        held = 0
        if conn.execute("select to_regclass(%s)", (f"quarantine.{model}",)).fetchone()[0]:
            held = conn.execute(
                f"select count(*) from quarantine.{model} where run_id = %s and rule is not null", (run_id,)
            ).fetchone()[0]
        if raw_n != kept + held:
            lost.append(f"raw.{table}: {raw_n} rows, {kept} in staging.{model}, {held} quarantined")
    return lost


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(mutations=st.lists(mutation(), min_size=1, max_size=3))
def test_whatever_raw_holds_the_published_tables_stay_trustworthy(mutations, pg_admin_url, published_template):
    name = f"greenery_prop_{os.getpid()}_{next(_names)}"
    url = warehouse.create_database(pg_admin_url, name, template=published_template)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            before = frozen(conn)
            for statement in mutations:
                conn.execute(statement)
        run_id = f"prop-{next(_names)}"
        with warehouse_at(url):
            outcome, summary = run_day_through_the_tasks(url, run_id, DAY, full_refresh=True)
        event(f"outcome: {outcome}")
        with psycopg.connect(url, autocommit=True) as conn:
            if outcome == "published":
                assert oracle(conn) == [], mutations
                assert lost_rows(conn, run_id) == [], mutations
            else:
                assert frozen(conn) == before, (outcome, mutations)
            assert absurd_values(conn) == [], mutations
        # 4. The alert tells the same story as the outcome.
        if summary is not None:
            header = messages.build_alert(summary)["blocks"][0]["text"]["text"]
            if outcome == "blocked":
                assert header.startswith("🔴"), header
            elif summary["failures"] or summary["quarantined"]:
                assert header.startswith("🟡"), header
            else:
                assert header.startswith("🟢"), header  # and alert_slack skips: nothing to say
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            admin.execute(f'drop database if exists "{name}" with (force)')
