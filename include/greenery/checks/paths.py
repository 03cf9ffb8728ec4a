"""Where Great Expectations keeps this project's results and Data Docs (no GX import: the UI reads this)."""

from __future__ import annotations

from pathlib import Path


def data_docs_index(gx_dir: Path) -> Path:
    return Path(gx_dir) / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"


def validation_results_dir(gx_dir: Path) -> Path:
    return Path(gx_dir) / "gx" / "uncommitted" / "validations"
