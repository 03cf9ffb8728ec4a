"""Airflow plugin: a "Data quality" page in the Airflow UI for the greenery_daily validations.

The API server mounts the FastAPI app of :mod:`greenery.ui.app` under ``/data-quality`` and the UI
shows it in its nav (an external view embedded as an iframe at ``/plugin/data-quality``).

Every Airflow process imports the plugins folder (task runners too, for macros), so this module stays
light: the FastAPI app, and with it fastapi, greenery and the database code, is only built when the API
server asks for ``fastapi_apps``; the warehouse is only read inside request handlers.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

from airflow.plugins_manager import AirflowPlugin

log = logging.getLogger(__name__)

URL_PREFIX = "/data-quality"


@cache
def _fastapi_apps() -> list[dict[str, Any]]:
    try:
        from greenery.ui.app import create_app

        app = create_app()
    except Exception:
        # Do not take the whole API server down with the page: log why it is missing.
        log.exception("greenery data-quality view disabled: its app could not be built")
        return []
    return [{"app": app, "url_prefix": URL_PREFIX, "name": "Greenery data quality"}]


class _BuiltOnFirstRead:
    """A class attribute computed when first read (``plugin.fastapi_apps`` is only read by the API server)."""

    def __init__(self, build):
        self._build = build

    def __get__(self, instance, owner=None):
        return self._build()


class GreeneryQualityPlugin(AirflowPlugin):
    name = "greenery_quality"
    fastapi_apps = _BuiltOnFirstRead(_fastapi_apps)
    external_views = [  # noqa: RUF012 - Airflow's own attribute type
        {
            "name": "Data quality",
            # Relative to the UI's base URL (no leading slash), so it also works under a [api] base_url path.
            "href": "data-quality/",
            "url_route": "data-quality",
            "destination": "nav",
            "nav_top_level": True,
            "icon": "data-quality/icon.svg",
            "icon_dark_mode": "data-quality/icon-dark.svg",
        }
    ]
