"""A load keeps what a raw table holds besides its rows and grants, or stops before it changes anything.

Review: a load replaced each raw table and dropped its comments, row-level security and policies, triggers, keys
and indexes with it, without a word; a role limited by a policy to some rows read every row after the next load,
its ``select`` grant kept.
"""

from __future__ import annotations

import shutil

import psycopg
import pytest
from helpers import may_log_in, roles, table_hash
from psycopg import sql

from greenery.sources import load as raw
from greenery.sources.schema import RAW_TABLES

pytestmark = pytest.mark.db

# Everything a raw table can hold that the load makes again, in one state, as a DBA might have set it up.
ATTACHED = """
comment on table raw.orders is 'Orders as the shop''s database has them';
comment on column raw.orders.status is 'preparing, shipped or delivered';
alter table raw.users add constraint users_pkey primary key (user_id);
alter table raw.orders add constraint orders_user_fkey foreign key (user_id) references raw.users (user_id);
alter table raw.products add constraint price_not_negative check (price >= 0 and name <> '{}');
alter table raw.promos alter column status set default 'inactive';
alter table raw.promos alter column promo_id set not null;
alter table raw.events alter column event_type set statistics 500;
alter table raw.events alter column session_id set (n_distinct = -0.1);
create index events_by_user on raw.events (user_id, created_at desc) where user_id is not null;
alter index raw.events_created_at_idx rename to events_when;
alter table raw.events cluster on events_when;
create statistics raw.orders_status_service (dependencies) on status, shipping_service from raw.orders;
create table public.orders_changed (order_id text);
create function public.note_change() returns trigger language plpgsql as
    $$ begin insert into public.orders_changed values (new.order_id); return new; end $$;
create trigger orders_noted after update on raw.orders for each row execute function public.note_change();
create trigger orders_noted_off before insert on raw.orders for each row execute function public.note_change();
alter table raw.orders disable trigger orders_noted_off;
alter table raw.orders enable row level security;
alter table raw.orders force row level security;
alter table raw.orders set (fillfactor = 90, autovacuum_enabled = false);
alter table raw.orders replica identity full;
comment on index raw.events_by_user is 'who did what when';
comment on constraint users_pkey on raw.users is 'one row per user';
comment on trigger orders_noted on raw.orders is 'for the audit';
alter statistics raw.orders_status_service set statistics 300;
comment on statistics raw.orders_status_service is 'status follows the carrier';
alter table raw.users set (toast.autovacuum_enabled = false);
alter table raw.users alter column email set storage external;
alter table raw.users alter column first_name set compression pglz;
alter table raw.users replica identity using index users_pkey;
alter table raw.promos add constraint promos_pkey primary key (promo_id);
alter table raw.promos cluster on promos_pkey;
alter table raw.addresses set unlogged;
create unique index products_key on raw.products (product_id);
alter table raw.order_items add constraint order_items_product_fkey
    foreign key (product_id) references raw.products (product_id);
create function public.nothing() returns trigger language plpgsql as $$ begin return null; end $$;
create constraint trigger orders_checked after insert on raw.orders deferrable initially deferred
    for each row execute function public.nothing();
create statistics users_names (ndistinct) on first_name, last_name from raw.users;
comment on type raw.orders is 'an order, as a row';
alter statistics users_names set statistics 50;
"""


def _catalog(conn) -> dict[str, tuple]:
    """What each raw table holds besides its rows and grants, as PostgreSQL describes it (no oids)."""
    found = {}
    for table in RAW_TABLES:
        params = {"t": f"raw.{table}"}
        one = conn.execute(
            "select obj_description(oid, 'pg_class'), relrowsecurity, relforcerowsecurity, relreplident, reloptions,"
            " relpersistence, (select t.reloptions from pg_class t where t.oid = c.reltoastrelid),"
            " obj_description(reltype, 'pg_type')"
            " from pg_class c where oid = %(t)s::regclass",
            params,
        ).fetchone()
        columns = conn.execute(
            "select attname, col_description(attrelid, attnum), attnotnull, pg_get_expr(adbin, adrelid),"
            " attstattarget, attoptions, attstorage, attcompression"
            " from pg_attribute left join pg_attrdef on adrelid = attrelid and adnum = attnum"
            " where attrelid = %(t)s::regclass and attnum > 0 and not attisdropped order by attnum",
            params,
        ).fetchall()
        parts = [
            "select conname, pg_get_constraintdef(oid), obj_description(oid, 'pg_constraint') from pg_constraint"
            " where conrelid = %(t)s::regclass",
            "select c.relname, pg_get_indexdef(i.indexrelid), i.indisclustered, i.indisreplident,"
            " obj_description(c.oid, 'pg_class') from pg_index i"
            " join pg_class c on c.oid = i.indexrelid where i.indrelid = %(t)s::regclass",
            "select tgname, pg_get_triggerdef(oid), tgenabled, obj_description(oid, 'pg_trigger') from pg_trigger"
            " where tgrelid = %(t)s::regclass and not tgisinternal",
            "select policyname, permissive, roles, cmd, qual, with_check, obj_description(o.oid, 'pg_policy')"
            " from pg_policies p join pg_policy o on o.polrelid = %(t)s::regclass and o.polname = p.policyname",
            "select pg_get_statisticsobjdef(oid), stxstattarget, pg_get_userbyid(stxowner),"
            " obj_description(oid, 'pg_statistic_ext') from pg_statistic_ext where stxrelid = %(t)s::regclass",
        ]
        found[table] = (one, columns, *(sorted(conn.execute(q, params).fetchall()) for q in parts))
    return found


def _oids(conn) -> dict[str, int]:
    return {t: conn.execute("select %s::regclass::oid", (f"raw.{t}",)).fetchone()[0] for t in RAW_TABLES}


@pytest.fixture
def reader(db):
    """A role granted select on raw, dropped at the end."""
    with roles(db, "reader") as (role,):
        yield role


def test_a_load_keeps_what_the_tables_hold_and_a_policy_still_limits_a_reader(db, real_greenery, reader):
    raw.load_dir(db, real_greenery)
    db.execute(ATTACHED)
    who = sql.Identifier(reader)
    db.execute(
        sql.SQL("grant usage on schema raw to {}; grant select on all tables in schema raw to {}").format(who, who)
    )
    db.execute(
        sql.SQL("create policy shipped_only on raw.orders for select to {} using (status = 'shipped')").format(who)
    )
    db.execute("comment on policy shipped_only on raw.orders is 'shipped orders only'")
    before, oids = _catalog(db), _oids(db)
    assert before["orders"][5][0][0] == "shipped_only"  # the set-up is what it says

    assert raw.load_dir(db, real_greenery)["orders"] == 361
    assert all(oid != oids[t] for t, oid in _oids(db).items())  # every table was replaced
    assert _catalog(db) == before
    # The policy limits the reader as before the load (review: it read every order).
    shipped = db.execute("select count(*) from raw.orders where status = 'shipped'").fetchone()[0]
    db.execute(sql.SQL("set role {}").format(who))
    assert db.execute("select count(*) from raw.orders").fetchone()[0] == shipped < 361
    db.execute("reset role")
    # The triggers act on the new table: the enabled one fires, the disabled one does not.
    db.execute("alter table raw.orders no force row level security")
    db.execute("update raw.orders set status = status where order_id = (select min(order_id) from raw.orders)")
    assert db.execute("select count(*) from public.orders_changed").fetchone()[0] == 1


def _with_duplicate_order(real_greenery, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(real_greenery, data, ignore=shutil.ignore_patterns("*.md"))
    lines = (data / "orders.csv").read_bytes().splitlines(keepends=True)
    (data / "orders.csv").write_bytes(b"".join([*lines, lines[1]]))
    return data


def test_a_load_whose_rows_break_a_kept_key_stops_naming_it_and_changes_nothing(db, real_greenery, tmp_path):
    raw.load_dir(db, real_greenery)
    db.execute("alter table raw.orders add constraint orders_pkey primary key (order_id)")
    before, hashed = _catalog(db), {t: table_hash(db, f"raw.{t}") for t in RAW_TABLES}
    with pytest.raises(raw.RawLoadError) as refused:
        raw.load_dir(db, _with_duplicate_order(real_greenery, tmp_path))
    said = str(refused.value)
    assert said.startswith("replacing the tables of raw: raw.orders: its constraint orders_pkey cannot be kept"), said
    assert "is duplicated" in said and said.endswith("nothing was changed"), said
    assert _catalog(db) == before
    assert {t: table_hash(db, f"raw.{t}") for t in RAW_TABLES} == hashed


@pytest.mark.parametrize(
    ("set_up", "named"),
    [
        ("create view public.open_orders as select * from raw.orders", "view open_orders"),
        ("create publication greenery_test_pub for table raw.orders", "publication of table raw.orders"),
        (
            "alter table raw.users add column loaded_at timestamptz",
            'column loaded_at (the files do not have it: its values would be lost; drop it (alter table "raw"."users"'
            ' drop column "loaded_at") or add it to the files, then load)',
        ),
        # User trial: a column renamed upstream was refused, naming no way out; the rename back is given.
        (
            "alter table raw.products rename column name to product_name",
            "column product_name (the files do not have it: its values would be lost; rename it back (alter table"
            ' "raw"."products" rename column "product_name" to "name"), then load)',
        ),
        ("create rule no_deletes as on delete to raw.promos do instead nothing", "rule no_deletes on table raw.promos"),
        (
            "create table public.all_promos (like raw.promos) partition by list (status);"
            " alter table public.all_promos attach partition raw.promos default",
            "its place in table all_promos (a partition of it)",
        ),
        (
            "create table public.base_products (like raw.products); alter table raw.products inherit base_products",
            "its place in table base_products (it inherits from it)",
        ),
        ("create table public.old_promos () inherits (raw.promos)", "table old_promos (it inherits from this one)"),
        (
            "create function public.total(o raw.orders) returns numeric language sql as $$ select o.order_total $$",
            "function total(raw.orders)",
        ),
        ("create table public.snapshots (o raw.orders)", "column o of table snapshots"),
        ("create table public.many (o raw.orders[])", "column o of table many"),
        (
            "create table public.base (); create table public.snap (o raw.orders) inherits (public.base)",
            "column o of table snap",
        ),
        (
            "create type public.promo_t as (promo_id text, discount numeric, status text);"
            " alter table raw.promos of public.promo_t",
            "its type promo_t (a typed table",
        ),
        (
            "alter table raw.promos rename to promos_flat;"
            " create table raw.promos (like raw.promos_flat) partition by list (status); drop table raw.promos_flat",
            "raw.promos holds what a load would drop with it and cannot make again: its partitioning",
        ),
        (
            "alter table raw.users add primary key (user_id);"
            " create table public.mine (user_id text references raw.users (user_id))",
            "constraint mine_user_id_fkey on table mine",
        ),
        (
            "create table public.counter (n int); alter table raw.orders add column id serial",
            "column id (the files do not have it",
        ),
    ],
)
def test_what_a_load_cannot_make_again_stops_it_before_it_changes_anything(db, real_greenery, set_up, named):
    raw.load_dir(db, real_greenery)
    try:
        db.execute(set_up)
        before, oids = _catalog(db), _oids(db)
        with pytest.raises(raw.RawLoadError) as refused:
            raw.load_dir(db, real_greenery)
        said = str(refused.value)
        assert "holds what a load would drop with it and cannot make again: " in said, said
        assert named in said and said.endswith("nothing was changed"), said
        assert _oids(db) == oids and _catalog(db) == before
    finally:
        db.execute("drop publication if exists greenery_test_pub")


def test_a_one_table_load_keeps_a_key_another_table_points_at_through_the_other_tables_load(db, real_greenery):
    """A key between two raw tables is kept when both are loaded; a load of the referenced table alone stops (the
    other table's foreign key would have to go), naming the key."""
    raw.load_dir(db, real_greenery)
    db.execute("alter table raw.users add primary key (user_id)")
    db.execute("alter table raw.orders add foreign key (user_id) references raw.users (user_id)")
    before = _catalog(db)
    with pytest.raises(raw.RawLoadError, match=r"constraint orders_user_id_fkey on table raw\.orders"):
        raw.load_csv(db, real_greenery / "users.csv", "users")
    assert _catalog(db) == before
    raw.load_csv(db, real_greenery / "orders.csv", "orders")  # the referencing table alone: its key is made again
    assert _catalog(db) == before
    with psycopg.connect(db.info.dsn, autocommit=True) as other, pytest.raises(psycopg.errors.ForeignKeyViolation):
        other.execute("insert into raw.orders (order_id, user_id) values ('x', 'nobody')")


def test_every_table_that_stops_a_load_is_named_at_once(db, real_greenery):
    """One message for all of them: fixing one, loading, and only then hearing of the next is a slow way to learn."""
    raw.load_dir(db, real_greenery)
    db.execute("create view public.open_orders as select * from raw.orders")
    db.execute("alter table raw.promos add column note text, add column seen boolean")
    with pytest.raises(raw.RawLoadError) as refused:
        raw.load_dir(db, real_greenery)
    said = str(refused.value)
    assert "raw.promos holds what a load would drop with it and cannot make again: column note" in said, said
    assert ", column seen (" in said and "; raw.orders holds what a load would drop" in said, said
    assert said.count("view open_orders") == 1, said  # once, not once per column it reads
    assert said.endswith("view open_orders; nothing was changed"), said


def test_an_old_index_with_the_name_of_one_the_load_makes_keeps_it_and_the_loads_own_stays(db, real_greenery):
    """Review: a user's BRIN index named as the load's own btree index (orders_created_at_idx) failed every load."""
    raw.load_dir(db, real_greenery)
    db.execute("drop index raw.orders_created_at_idx")
    db.execute("create index orders_created_at_idx on raw.orders using brin (created_at)")
    raw.load_dir(db, real_greenery)
    indexes = dict(
        db.execute(
            "select c.relname, pg_get_indexdef(i.indexrelid) from pg_index i join pg_class c on c.oid = i.indexrelid"
            " where i.indrelid = 'raw.orders'::regclass"
        ).fetchall()
    )
    assert indexes == {
        "orders_created_at_idx": "CREATE INDEX orders_created_at_idx ON raw.orders USING brin (created_at)",
        "orders_created_at_idx1": "CREATE INDEX orders_created_at_idx1 ON raw.orders USING btree (created_at)",
    }


def test_what_another_session_changes_on_a_table_while_it_is_swapped_waits_for_the_swap(db, real_greenery, monkeypatch):
    """Review: a policy made by another session between the load's read of a table and its drop was dropped with it.
    The load locks the tables before it reads them: the other session's change waits (here: gives up after its lock
    timeout), so it is either made before the read and kept, or after the swap, on the new table."""
    from greenery.sources import attachments

    raw.load_dir(db, real_greenery)
    read, tried = attachments._read, []

    def read_then_change(cur, schema, table, *args):
        found = read(cur, schema, table, *args)
        if table == "orders":
            with psycopg.connect(db.info.dsn, autocommit=True) as other:
                other.execute("set lock_timeout = '300ms'")
                try:
                    other.execute("comment on table raw.orders is 'late'")
                    tried.append("made")
                except psycopg.errors.LockNotAvailable:
                    tried.append("waited")
        return found

    monkeypatch.setattr(attachments, "_read", read_then_change)
    raw.load_dir(db, real_greenery)
    assert tried == ["made", "waited"]  # the early check holds no lock; the swap's read does
    assert db.execute("select obj_description('raw.orders'::regclass, 'pg_class')").fetchone()[0] == "late"


def test_an_invalid_index_is_not_made_again(db, real_greenery):
    """Second review: an index a failed `create index concurrently` left (invalid: never used, never enforced) made
    every load fail, blaming the loaded rows for the duplicates it would have refused."""
    raw.load_dir(db, real_greenery)
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute("create unique index concurrently promos_status_unique on raw.promos (status)")
    assert db.execute("select to_regclass('raw.promos_status_unique')").fetchone()[0] is not None  # left, invalid
    raw.load_dir(db, real_greenery)
    assert db.execute("select to_regclass('raw.promos_status_unique')").fetchone()[0] is None


def test_names_the_load_gives_its_own_indexes_never_take_one_an_old_index_or_constraint_has(db, real_greenery):
    """Second review: the load's own indexes were named table by table, before the constraints: a constraint named
    as the load's index, or an index of another raw table with that name, then failed every load."""
    raw.load_dir(db, real_greenery)
    db.execute("drop index raw.orders_created_at_idx")
    db.execute("create unique index orders_created_at_idx on raw.orders (order_id)")
    db.execute("alter table raw.orders add constraint orders_created_at_idx unique using index orders_created_at_idx")
    db.execute("alter index raw.events_created_at_idx rename to events_when")
    db.execute("create index events_created_at_idx on raw.orders (user_id)")
    before = _catalog(db)
    raw.load_dir(db, real_greenery)
    after = _catalog(db)
    assert {t: a for t, a in after.items() if t != "orders"} == {t: b for t, b in before.items() if t != "orders"}
    orders_indexes = {name: definition for name, definition, *_ in after["orders"][3]}
    assert {name: definition for name, definition, *_ in before["orders"][3]}.items() < orders_indexes.items()
    # The load's own index on created_at is there under a name of its own.
    [own] = [name for name in orders_indexes if name not in {name for name, *_ in before["orders"][3]}]
    assert orders_indexes[own] == f"CREATE INDEX {own} ON raw.orders USING btree (created_at)"


def test_what_the_loading_role_may_not_make_again_stops_the_load_before_it_reads_a_file(
    db, warehouse_url, real_greenery, monkeypatch
):
    """Third review: a trigger whose function the loading role may not execute, or statistics owned by a role it
    cannot act as, failed every load after all seven files were read, with PostgreSQL's words."""
    with roles(db, "loader") as (loader,):
        password = may_log_in(db, loader)
        db.execute(
            sql.SQL("grant create on database {} to {}").format(sql.Identifier(db.info.dbname), sql.Identifier(loader))
        )
        with psycopg.connect(warehouse_url, user=loader, password=password, autocommit=True) as conn:
            raw.load_dir(conn, real_greenery)
            db.execute(
                "create function public.audit() returns trigger language plpgsql as $$ begin return new; end $$;"
                " revoke execute on function public.audit() from public;"
                " create trigger orders_audited before insert on raw.orders for each row execute function audit();"
                " create statistics raw.orders_dep (dependencies) on status, shipping_service from raw.orders"
            )
            read = []
            monkeypatch.setattr(raw, "_copy_csv", lambda *args, **kwargs: read.append(args))
            with pytest.raises(raw.RawLoadError) as refused:
                raw.load_dir(conn, real_greenery)
        said = str(refused.value)
        assert "trigger orders_audited (the loading role may not execute its function audit)" in said, said
        assert "extended statistics orders_dep (owned by postgres, a role the loading role cannot act as)" in said
        assert read == []  # no file was read
        db.execute("drop function public.audit() cascade")
