"""The "Data quality" view of the Airflow UI, as a FastAPI app.

``plugins/greenery_quality_plugin.py`` mounts :func:`create_app` on the Airflow API server under
``/data-quality``; tests mount it on their own. Routes (relative to the mount point):

- ``/``             HTML: the latest run, one row per table, failing checks, quarantine, history: the latest
  validation's run, or a run that failed after it (before its own validation), with its failed tasks
- ``/api/latest``   JSON: the same latest run and the latest result of every table
- ``/docs/``        an index of the GX Data Docs' validation pages (GX's own needs scripts)
- ``/docs/{path}``  the GX Data Docs, sandboxed: they hold raw data values that GX writes unescaped. They are
  read from the warehouse (``greenery_audit.data_docs``), where the validate task stored them: the API server
  needs no file of the worker that ran it
- ``/static/...``   the page's stylesheet and the nav icons

Every response sends a Content-Security-Policy without scripts and ``nosniff``, so a hostile value in
the warehouse cannot run in a viewer's Airflow session: the page and the JSON escape values, and the
Data Docs, which GX does not escape, are sandboxed (see :data:`DOCS_HEADERS`).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders

from greenery import config, links
from greenery.ui import data_docs, render
from greenery.ui.report import HISTORY_LIMIT, UnknownRunError, WarehouseError, reading, report

STATIC_DIR = Path(__file__).parent / "static"
NO_STORE = {"Cache-Control": "no-store"}
# Every response of the app, whatever its route (JSON, errors, icons): no MIME sniffing, no referrer
# outside the origin, and a policy allowing nothing unless the route sets its own.
BASELINE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'self'; base-uri 'none'; form-action 'none'",
}
# The page: our stylesheet, no script at all, framed only by the Airflow UI (same origin).
PAGE_HEADERS = {
    **NO_STORE,
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:;"
    " frame-ancestors 'self'; base-uri 'none'; form-action 'none'",
}
# GX's Data Docs hold data values that GX writes unescaped, so markup from the warehouse may be in them:
# - `sandbox` without allow-scripts: no script, form, popup, plugin or automatic refresh, even where a
#   browser would ignore default-src; default-src 'none' blocks scripts a second time.
# - allow-same-origin: inside the Airflow UI's iframe, a link followed from an opaque-origin document
#   goes without Airflow's login cookie (SameSite=Lax) and answers 401 (checked in Chromium). Without
#   scripts the document cannot use its origin for anything.
# - no 'self' source at all: planted markup cannot make the viewer's browser request any URL of the
#   origin with the viewer's cookie (`<img src=/auth/logout>`), nor any other host. Our stylesheet and
#   GX's own styles are inline; images only as data: URLs.
DOCS_HEADERS = {
    **NO_STORE,
    "Content-Security-Policy": "sandbox allow-same-origin; default-src 'none'; style-src 'unsafe-inline';"
    " img-src data:; font-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'self'",
}


class _BaselineHeaders:
    """ASGI middleware: :data:`BASELINE_HEADERS` on every response, unless the route set its own."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in BASELINE_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


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
        # A 404 too: an alert's Data quality button of a run that recorded nothing yet (killed before validate, whose
        # page the run's own callback sends) opened raw JSON (review).
        wants_html = exc.status_code in (401, 403, 404) and "text/html" in request.headers.get("accept", "")
        if wants_html:
            title = {401: "Sign in to Airflow", 403: "Not allowed"}.get(exc.status_code, "Nothing to show here yet")
            # Links are relative (the API server may live under a base path): climb to Airflow's root.
            below = request.url.path[len(request.scope.get("root_path", "")) :]
            home = "../" * max(1, below.count("/"))
            app_root = "../" * max(0, below.count("/") - 1)
            sign_in = exc.status_code != 404
            page = render.render_unauthorized(
                title=title, detail=str(exc.detail), home=home, base=app_root, sign_in=sign_in
            )
            return HTMLResponse(page, status_code=exc.status_code, headers=PAGE_HEADERS)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @router.get("/", response_class=HTMLResponse)
    def page(run_id: str | None = None) -> HTMLResponse:
        run_id = _asked(run_id)
        try:
            with reading() as conn:
                data = _with_docs_pages(conn, report(conn, history_limit, run_id), render.docs_root())
                docs = data_docs.built(conn)
        except UnknownRunError as exc:
            raise HTTPException(404, str(exc)) from None
        except WarehouseError as exc:
            page = render.render_page(None, error=str(exc), docs=False)
            return HTMLResponse(page, status_code=503, headers=PAGE_HEADERS)
        return HTMLResponse(render.render_page(data, docs=docs, run_id=run_id), headers=PAGE_HEADERS)

    @router.get("/api/latest")
    def latest(run_id: str | None = None) -> JSONResponse:
        run_id = _asked(run_id)
        try:
            with reading() as conn:
                # Absolute links: relative ones would resolve against this URL (…/api/docs/…, 404).
                data = _with_docs_pages(conn, report(conn, history_limit, run_id), links.docs_url())
                docs = data_docs.built(conn)
        except UnknownRunError as exc:
            raise HTTPException(404, str(exc)) from None
        except WarehouseError as exc:
            return JSONResponse(
                {"error": "warehouse_unavailable", "detail": str(exc)}, status_code=503, headers=NO_STORE
            )
        run = data["latest_run"]
        if run:  # this deployment's links, as the page has them: not the URL stored when the run validated
            run = {**run, "log_url": render.log_link(run, data), "run_url": links.run_url(run["run_id"])}
        body = {
            "dag_id": data["dag_id"],
            "latest_run": run,
            "serving": data["serving"],
            "tables": data["tables"],
            "tables_as_of": data["tables_as_of"],  # None: each table's latest result; else as of this time
            "root_causes": data["root_causes"],
            "notes": data["notes"],
            "task_failures": data["task_failures"],
            # The latest validation when latest_run is a newer run that failed before its own (else None).
            "previous_validation": {**previous, "quality_url": links.quality_url(previous["run_id"])}
            if (previous := data["previous_validation"])
            else None,
            # A run's own page: a later attempt (a clear) failed before validate, after the validation shown.
            "cleared_and_failed": data["cleared_and_failed"],
            "quarantined": data["quarantined"],
            "data_docs": links.docs_url("index.html") if docs else None,
        }
        return JSONResponse(body, headers=NO_STORE)

    @router.get("/docs/{path:path}")
    def docs(path: str) -> Response:
        try:
            with reading() as conn:
                if not data_docs.built(conn):
                    raise HTTPException(404, "The Data Docs have not been built yet (the validate task builds them).")
                if path.lstrip("/") in data_docs.INDEX_PATHS:
                    runs, html = data_docs.validation_runs(conn), None
                else:
                    runs, html = None, data_docs.page(conn, path)
        except WarehouseError as exc:
            return JSONResponse(
                {"error": "warehouse_unavailable", "detail": str(exc)}, status_code=503, headers=NO_STORE
            )
        if runs is not None:
            # GX's index lists the runs only with scripts, which the sandbox blocks: list them ourselves.
            up = "../" * (data_docs.depth(path) - 1)  # to the Docs root from where this URL is
            page = render.render_docs_index(runs, app_root=f"../{up}", docs_root=up)
            return HTMLResponse(page, headers=DOCS_HEADERS)
        if html is None:
            raise HTTPException(404, "Not found")
        return HTMLResponse(render.with_docs_style(data_docs.without_unbuilt_links(html)), headers=DOCS_HEADERS)

    # The nav icons and the stylesheet carry no data; the UI loads the icons before any login.
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/icon.svg", include_in_schema=False)
    @app.get("/icon-dark.svg", include_in_schema=False)
    def icon(request: Request) -> Response:
        return FileResponse(STATIC_DIR / request.url.path.rsplit("/", 1)[-1], media_type="image/svg+xml")

    app.include_router(router)
    app.add_middleware(_BaselineHeaders)
    return app


def _asked(run_id: str | None) -> str | None:
    """``?run_id=`` left empty (a link built from an empty id, an edited bookmark) asks for the latest run: it said
    that nothing had ever been validated (review)."""
    return (run_id.strip() or None) if run_id else None


def _with_docs_pages(conn, data: dict, root: str) -> dict:
    """Each table's link to its validation page in the Data Docs (``root`` + its path below them), or None."""
    pages = data_docs.pages_of(conn, [(t.get("suite"), t.get("run_id")) for t in data["tables"]])
    for table in data["tables"]:
        page = pages.get((table.get("suite"), table.get("run_id")))
        table["data_docs"] = f"{root}{page}" if page else None
    return data
