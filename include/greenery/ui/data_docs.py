"""The GX Data Docs folder as the view serves it: which file a URL names, and which pages it holds.

GX writes raw data values (unexpected values, sample rows) into its pages without escaping them, and its
own index lists the results only with JavaScript (from CDNs). The app serves these files sandboxed and
without scripts (see :mod:`greenery.ui.app`), so it lists the validation pages itself, from the folder:
``validations/<suite>/<run name>/<run time>/<batch>.html``, one page per suite and validation run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from greenery import config
from greenery.checks.paths import data_docs_index

VALIDATIONS = "validations"
INDEX_RUNS = 30


@dataclass(frozen=True)
class ValidationRun:
    """One validation run in the Data Docs: its name (the DAG run id), its time and each suite's page."""

    run_name: str
    run_time: str  # GX's folder name, e.g. 20240302T010203.456789Z: sorts in time order
    pages: tuple[tuple[str, str], ...]  # (suite, href relative to the Data Docs root, percent-encoded)


def docs_root() -> Path:
    return data_docs_index(config.get().gx_dir).parent


def built() -> bool:
    return (docs_root() / "index.html").is_file()


def docs_file(path: str) -> Path | None:
    """The file under the Data Docs folder that ``path`` names, or None (missing, or outside the folder)."""
    root = docs_root()
    if "\x00" in path or not root.is_dir():
        return None
    root = root.resolve()
    try:
        target = (root / path.lstrip("/")).resolve()
        if target.is_dir():
            target = (target / "index.html").resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    # `..`, an absolute path or a symlink leading out of the folder all end up outside it.
    return target if target.is_relative_to(root) and target.is_file() else None


def _href(*segments: str) -> str:
    # Run names hold ':' and '+', and may hold '#', '?' or '%': each segment is encoded whole.
    return "/".join(quote(s, safe="") for s in (VALIDATIONS, *segments))


def _subdirs(folder: Path) -> list[os.DirEntry]:
    try:
        return [e for e in os.scandir(folder) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []


def _pages_in(folder: Path) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(folder) if e.name.endswith(".html") and e.is_file())
    except OSError:
        return []


def _plain_name(name: str | None) -> bool:
    """A single folder name (suite and run names come from the warehouse: never a path)."""
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name and "\x00" not in name


def validation_runs(limit: int = INDEX_RUNS) -> list[ValidationRun]:
    """The ``limit`` newest validation runs in the Data Docs, newest first, each with its suites by name."""
    pages: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for suite in _subdirs(docs_root() / VALIDATIONS):
        for run in _subdirs(Path(suite.path)):
            for at in _subdirs(Path(run.path)):
                for page in _pages_in(Path(at.path)):
                    href = _href(suite.name, run.name, at.name, page)
                    pages.setdefault((at.name, run.name), []).append((suite.name, href))
    newest = sorted(pages, reverse=True)[:limit]
    return [ValidationRun(run, at, tuple(sorted(pages[(at, run)]))) for at, run in newest]


def page_of(suite: str | None, run_name: str | None) -> str | None:
    """The newest page of ``suite`` in the run named ``run_name`` (a DAG run id), relative to the Docs root."""
    if not (_plain_name(suite) and _plain_name(run_name)):
        return None
    times = sorted((e.name for e in _subdirs(docs_root() / VALIDATIONS / suite / run_name)), reverse=True)
    for at in times:
        pages = _pages_in(docs_root() / VALIDATIONS / suite / run_name / at)
        if pages:
            return _href(suite, run_name, at, pages[0])
    return None


def depth(path: str) -> int:
    """How many folders below the app's root a docs URL path is (``docs/`` itself counts one)."""
    return 1 + path.lstrip("/").count("/")
