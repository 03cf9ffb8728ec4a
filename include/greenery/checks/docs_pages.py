"""The Data Docs pages one validation rendered, read from the folder GX wrote them to (no GX import).

The validate task gives GX a fresh temporary folder per validation (checks/gx.py refuses a used one), reads
the pages back with :func:`collect` and stores them in the warehouse (audit.record_data_docs): the folder is
gone when the task ends, and every component (the api-server of another host too) reads them from there.

A page's ``path`` is where GX put it below its site, ``validations/<suite>/<run name>/<run time>/<batch>.html``:
unique per validation (the run time is GX's, to the microsecond), and the URL the view serves it at. Only the
validation pages are rendered (checks/gx.py) and kept: GX's index needs scripts the view's sandbox blocks (the
view lists the runs itself), and its static files (fonts, images, a stylesheet) are never loaded by a sandboxed
page (``default-src 'none'``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from greenery.checks import paths

VALIDATIONS = "validations"


class DocsFolderError(RuntimeError):
    """GX's folder does not hold what a validation writes there; the message names the file."""


@dataclass(frozen=True)
class DocsPage:
    """One suite's page of one validation, with the GX result (JSON text) it renders."""

    path: str
    suite: str
    run_name: str
    run_time: str
    html: str
    result: str | None


def _result_of(results_dir: Path, parts: tuple[str, ...]) -> str | None:
    """GX's stored result for the page at ``parts`` (same layout, ``.json``), checked to be JSON."""
    found = results_dir.joinpath(*parts).with_suffix(".json")
    if not found.is_file():
        return None
    text = found.read_text(encoding="utf-8")
    try:
        json.loads(text)
    except ValueError as exc:
        raise DocsFolderError(f"{found}: GX's validation result is not JSON: {exc}") from None
    return text


def collect(gx_dir: Path) -> list[DocsPage]:
    """Every validation page under ``gx_dir`` (see checks/paths.py), sorted by path."""
    site = paths.data_docs_index(gx_dir).parent
    results = paths.validation_results_dir(gx_dir)
    pages = []
    for page in sorted((site / VALIDATIONS).rglob("*.html")):
        parts = page.relative_to(site / VALIDATIONS).parts
        if len(parts) != 4:
            raise DocsFolderError(f"{page}: expected {VALIDATIONS}/<suite>/<run name>/<run time>/<batch>.html")
        suite, run_name, run_time, _ = parts
        pages.append(
            DocsPage(
                path="/".join((VALIDATIONS, *parts)),
                suite=suite,
                run_name=run_name,
                run_time=run_time,
                html=page.read_text(encoding="utf-8", errors="replace"),
                result=_result_of(results, parts),
            )
        )
    return pages
