"""The "Data quality" view of the Airflow UI, as a FastAPI app.

``plugins/greenery_quality_plugin.py`` mounts :func:`create_app` on the Airflow API server under
``/data-quality``; tests mount it on their own. Routes (relative to the mount point):

- ``/``             HTML: the latest validation run, one row per table, failing checks, quarantine, history
- ``/api/latest``   JSON: the latest run and the latest result of every table
- ``/docs/{path}``  the GX Data Docs, sandboxed: they hold raw data values that GX writes unescaped
- ``/static/...``   the page's stylesheet and the nav icons

Every response that carries data sends a Content-Security-Policy without scripts, so a hostile value
in the warehouse cannot run in a viewer's Airflow session.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from greenery import config
from greenery.ui import render
from greenery.ui.report import HISTORY_LIMIT, WarehouseError, docs_file, read_report

STATIC_DIR = Path(__file__).parent / "static"
NO_STORE = {"Cache-Control": "no-store"}
# The page: our stylesheet, no script at all, framed only by the Airflow UI (same origin).
PAGE_HEADERS = {
    **NO_STORE,
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:;"
    " frame-ancestors 'self'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
}
# GX's Data Docs: an opaque-origin sandbox without scripts (their values are not escaped by GX).
DOCS_HEADERS = {
    "Content-Security-Policy": "sandbox; default-src 'none'; style-src 'self' 'unsafe-inline';"
    " img-src 'self' data:; font-src 'self' data:; frame-ancestors 'self'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def _airflow_reader():
    """A dependency: the caller is signed in to Airflow and may read the runs of the DAG.

    Airflow mounts plugin apps as they are, without its own authentication, so the app checks it: the
    JWT from the ``Authorization`` header or the UI's ``_token`` cookie (what the UI's iframe sends),
    then the auth manager's permission to read the DAG's runs (the results are about those runs).
    """
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
    from airflow.api_fastapi.core_api.security import get_user

    # A default, not an annotation: with postponed annotations FastAPI could not resolve a local name.
    def authorize(user=Depends(get_user)) -> None:  # noqa: B008 - FastAPI's way of declaring a dependency
        allowed = get_auth_manager().is_authorized_dag(
            method="GET", access_entity=DagAccessEntity.RUN, details=DagDetails(id=config.DAG_ID), user=user
        )
        if not allowed:
            raise HTTPException(403, f"Forbidden: you may not read the runs of DAG {config.DAG_ID}")

    return authorize


def create_app(*, require_auth: bool = True, history_limit: int = HISTORY_LIMIT) -> FastAPI:
    """The data-quality app. ``require_auth`` checks Airflow users (needs the API server's auth manager)."""
    app = FastAPI(
        title="Greenery data quality",
        docs_url=None,  # /docs serves the GX Data Docs
        redoc_url=None,
        openapi_url=None,
    )
    router = APIRouter(dependencies=[Depends(_airflow_reader())] if require_auth else [])

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        wants_html = exc.status_code in (401, 403) and "text/html" in request.headers.get("accept", "")
        if wants_html:
            title = "Sign in to Airflow" if exc.status_code == 401 else "Not allowed"
            # Links are relative (the API server may live under a base path): climb to Airflow's root.
            below = request.url.path[len(request.scope.get("root_path", "")) :]
            home = "../" * max(1, below.count("/"))
            app_root = "../" * max(0, below.count("/") - 1)
            page = render.render_unauthorized(title=title, detail=str(exc.detail), home=home, base=app_root)
            return HTMLResponse(page, status_code=exc.status_code, headers=PAGE_HEADERS)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @router.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        docs = docs_file("index.html") is not None
        try:
            data = read_report(history_limit)
        except WarehouseError as exc:
            page = render.render_page(None, error=str(exc), docs=docs)
            return HTMLResponse(page, status_code=503, headers=PAGE_HEADERS)
        return HTMLResponse(render.render_page(data, docs=docs), headers=PAGE_HEADERS)

    @router.get("/api/latest")
    def latest() -> JSONResponse:
        try:
            data = read_report(history_limit)
        except WarehouseError as exc:
            return JSONResponse(
                {"error": "warehouse_unavailable", "detail": str(exc)}, status_code=503, headers=NO_STORE
            )
        body = {
            "dag_id": data["dag_id"],
            "latest_run": data["latest_run"],
            "serving": data["serving"],
            "tables": data["tables"],
            "quarantined": data["quarantined"],
            "data_docs": "docs/index.html" if docs_file("index.html") else None,
        }
        return JSONResponse(body, headers=NO_STORE)

    @router.get("/docs/{path:path}")
    def docs(path: str) -> FileResponse:
        if docs_file("index.html") is None:
            raise HTTPException(404, "The Data Docs have not been built yet (the validate task builds them).")
        found = docs_file(path)
        if found is None:
            raise HTTPException(404, "Not found")
        return FileResponse(found, headers=DOCS_HEADERS)

    # The nav icons and the stylesheet carry no data; the UI loads the icons before any login.
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/icon.svg", include_in_schema=False)
    @app.get("/icon-dark.svg", include_in_schema=False)
    def icon(request: Request) -> Response:
        return FileResponse(STATIC_DIR / request.url.path.rsplit("/", 1)[-1], media_type="image/svg+xml")

    app.include_router(router)
    return app
