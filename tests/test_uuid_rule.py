"""The staging rule ``malformed_uuid`` (a round trip through PostgreSQL's uuid type) says what the regex says.

The rule replaced ``column !~ UUID_PATTERN`` for speed; PostgreSQL's uuid input is lenient (capitals, braces,
hyphens elsewhere or none), so only the round trip makes the two agree. Checked on a real PostgreSQL, NULL
included: in the models the rule sits in ``case when ... or ...``, where NULL and false differ. The rule
needs PostgreSQL 16, so a run on an older server stops at its first task with a message that says so.
"""

from __future__ import annotations

import datetime as dt
import uuid
from types import SimpleNamespace

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greenery import wap, warehouse
from greenery.project.render import UUID_PATTERN, malformed_uuid

pytestmark = pytest.mark.db

CANONICAL = "5f0a2b9e-1c3d-4e5f-8a7b-9c0d1e2f3a4b"
TRICKY = [
    CANONICAL,
    CANONICAL.upper(),
    "{" + CANONICAL + "}",
    CANONICAL.replace("-", ""),
    "5f0a-2b9e-1c3d-4e5f-8a7b-9c0d-1e2f-3a4b",  # hyphens after every 4 digits: uuid input takes it
    " " + CANONICAL,
    CANONICAL + "\n",
    CANONICAL[:-1] + "\u0663",  # an Arabic-Indic digit three
    CANONICAL[:-1] + "\uff41",  # a fullwidth a
    CANONICAL[:-1],
    CANONICAL + "0",
    "",
    "not-a-uuid",
    None,
]


@pytest.fixture(scope="module")
def pg(pg_admin_url):
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        yield conn


def rule_and_pattern(pg, value: str | None) -> tuple[bool | None, bool | None]:
    # From a table, as in the models: on a constant, the planner folds the cast before CASE guards it.
    with pg.transaction(force_rollback=True):
        pg.execute("create temporary table ids (v text) on commit drop")
        pg.execute("insert into ids values (%s)", (value,))
        return pg.execute(f"select {malformed_uuid('v')}, v !~ {UUID_PATTERN} from ids").fetchone()


hex_like = st.text(alphabet="0123456789abcdefABCDEF-{} g", min_size=30, max_size=40)
variants = (
    st.uuids()
    .map(str)
    .flatmap(
        lambda u: st.sampled_from([u, u.upper(), u.replace("-", ""), "{" + u + "}", u[:8] + u[9:13] + "-" + u[13:]])
    )
)
values = st.none() | variants | hex_like | st.text().filter(lambda t: "\x00" not in t)


@settings(max_examples=150, deadline=None)
@given(value=values)
def test_the_malformed_uuid_rule_says_what_the_uuid_pattern_says(pg, value):
    rule, regex = rule_and_pattern(pg, value)
    assert rule == regex, f"{value!r}: malformed_uuid says {rule}, the pattern says {regex}"


@pytest.mark.parametrize("value", TRICKY)
def test_tricky_ids(pg, value):
    rule, regex = rule_and_pattern(pg, value)
    assert rule == regex, f"{value!r}: malformed_uuid says {rule}, the pattern says {regex}"
    assert rule is (None if value is None else value != str(uuid.UUID(CANONICAL)))


def test_an_older_postgresql_is_refused_before_the_run_builds_anything(pg):
    warehouse.require_supported_server(pg)  # the tests' own server passes
    older = SimpleNamespace(info=SimpleNamespace(server_version=150008))  # no execute(): touching it would fail
    with pytest.raises(warehouse.UnsupportedWarehouseError, match=r"PostgreSQL 15\.8 .*need PostgreSQL 16 or newer"):
        wap.prepare(older, wap.Build("scheduled__2021-02-12", dt.date(2021, 2, 12)))
