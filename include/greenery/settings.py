"""Names shared by the DAG, the CLI and the tests; each can be overridden by environment."""

from __future__ import annotations

import os
from pathlib import Path

WAREHOUSE_CONN_ID = os.environ.get("GREENERY_WAREHOUSE_CONN_ID", "greenery_warehouse")
RAW_SCHEMA = os.environ.get("GREENERY_RAW_SCHEMA", "raw")

# The layers are also the schemas readers use; their order is the build order.
LAYERS = ("staging", "intermediate", "marts")

INCLUDE_DIR = Path(__file__).resolve().parent.parent
SQL_DIR = Path(os.environ.get("GREENERY_SQL_DIR", INCLUDE_DIR / "sql"))
EXPECTATIONS_DIR = Path(os.environ.get("GREENERY_EXPECTATIONS_DIR", INCLUDE_DIR / "expectations"))

# Assets name the published marts as postgres://<authority>/<database>/<schema>/<table>. The URI must be
# known at parse time (no connection lookup there), so the warehouse's address for it comes from here.
ASSET_AUTHORITY = os.environ.get("GREENERY_ASSET_AUTHORITY", "warehouse:5432")
ASSET_DATABASE = os.environ.get("GREENERY_ASSET_DATABASE", "greenery")


def mart_asset_uri(table: str) -> str:
    return f"postgres://{ASSET_AUTHORITY}/{ASSET_DATABASE}/marts/{table}"
