"""The GX Data Docs as the view serves them, read from the warehouse: which page a URL names, which runs exist.

The validate task stores each validation's pages in ``greenery_audit.data_docs`` (see
:mod:`greenery.checks.docs_pages`): the api-server needs no file of the worker that ran it. A page's URL below
the Docs root is its stored ``path``, ``validations/<suite>/<run name>/<run time>/<batch>.html``; the URL is
matched exactly, so no ``..``, symlink or absolute path can name anything else.

GX writes raw data values (unexpected values, sample rows) into its pages without escaping them, and its
own index lists the results only with JavaScript (from CDNs). The app serves the pages sandboxed and
without scripts (see :mod:`greenery.ui.app`), and lists the validation runs itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote

from psycopg import sql

from greenery import audit

INDEX_RUNS = 30
INDEX_PATHS = ("", "index.html")
# Links GX writes into every validation page to pages that are never built (checks/gx.py renders validation pages
# only): the suite's page (``../../../../expectations/<suite>.html``, in the header) and a favicon of GX's static
# folder, which is not kept. Matched as GX writes them: a data value in a page that looks the same only loses a link.
_UNBUILT = (
    (re.compile(r'<a href="(?:\.\./)+expectations/[^"<>]*\.html"\s*>'), "<a>"),  # the suite's name stays, unlinked
    (re.compile(r'<link rel="shortcut icon" href="[^"<>]*static/images/favicon\.ico"[^<>]*>'), ""),
)


@dataclass(frozen=True)
class ValidationRun:
    """One validation run in the Data Docs: its name (the DAG run id), its time and each suite's page."""

    run_name: str
    run_time: str  # GX's folder name, e.g. 20240302T010203.456789Z: sorts in time order
    pages: tuple[tuple[str, str], ...]  # (suite, href relative to the Data Docs root, percent-encoded)


def _table() -> sql.Identifier:
    return audit.table("data_docs")


def href(path: str) -> str:
    """A stored path as a link: run names hold ':' and '+', and may hold '#', '?' or '%'; each segment whole."""
    return "/".join(quote(segment, safe="") for segment in path.split("/"))


def built(conn) -> bool:
    """Whether any validation stored its pages yet."""
    return (
        audit.exists(conn, "data_docs")
        and conn.execute(sql.SQL("select exists (select from {})").format(_table())).fetchone()[0]
    )


def page(conn, path: str) -> str | None:
    """The page stored at exactly ``path`` (an URL path below the Docs root, percent-decoded), or None.

    Exactly: ``docs//validations/...`` names no page, so each page has one URL (links relative to it work).
    """
    if not path or "\x00" in path or not audit.exists(conn, "data_docs"):
        return None
    row = conn.execute(sql.SQL("select page from {} where path = %s").format(_table()), (path,)).fetchone()
    return row[0] if row else None


def without_unbuilt_links(html: str) -> str:
    """A stored page without its links to pages that do not exist (each answered 404), of any stored page: an
    older validation's too."""
    for pattern, replacement in _UNBUILT:
        html = pattern.sub(replacement, html)
    return html


def validation_runs(conn, limit: int = INDEX_RUNS) -> list[ValidationRun]:
    """The ``limit`` newest validations in the Data Docs, newest first, each with its suites' pages by name."""
    if not audit.exists(conn, "data_docs"):
        return []
    rows = conn.execute(
        sql.SQL(
            "with newest as (select validation_id, max(stored_at) as at from {t} group by validation_id"
            " order by at desc limit %s)"
            " select d.validation_id, d.run_id, d.run_time, d.suite, d.path from {t} d"
            " join newest n using (validation_id) order by n.at desc, d.validation_id, d.suite, d.path"
        ).format(t=_table()),
        (limit,),
    ).fetchall()
    runs: dict[str, tuple[str, str, list[tuple[str, str]]]] = {}
    for validation_id, run_id, run_time, suite, path in rows:
        runs.setdefault(validation_id, (run_id, run_time, []))[2].append((suite, href(path)))
    return [ValidationRun(run_id, run_time, tuple(pages)) for run_id, run_time, pages in runs.values()]


def pages_of(conn, wanted: Iterable[tuple[str | None, str | None]]) -> dict[tuple[str, str], str]:
    """The newest page of each (suite, run id) in ``wanted`` that has one, as an href below the Docs root."""
    pairs = sorted({(s, r) for s, r in wanted if isinstance(s, str) and isinstance(r, str)})
    if not pairs or not audit.exists(conn, "data_docs"):
        return {}
    rows = conn.execute(
        sql.SQL(
            "select distinct on (d.suite, d.run_id) d.suite, d.run_id, d.path from {} d"
            " join unnest(%s::text[], %s::text[]) as w(suite, run_id) using (suite, run_id)"
            " order by d.suite, d.run_id, d.stored_at desc, d.path"
        ).format(_table()),
        ([s for s, _ in pairs], [r for _, r in pairs]),
    ).fetchall()
    return {(suite, run_id): href(path) for suite, run_id, path in rows}


def page_of(conn, suite: str | None, run_name: str | None) -> str | None:
    """The newest page of ``suite`` in the run named ``run_name`` (a DAG run id), relative to the Docs root."""
    return pages_of(conn, [(suite, run_name)]).get((suite, run_name))


def depth(path: str) -> int:
    """How many folders below the app's root a docs URL path is (``docs/`` itself counts one)."""
    return 1 + path.lstrip("/").count("/")
