"""The "Data quality" view of the Airflow UI, as a plain FastAPI app.

``plugins/greenery_quality_plugin.py`` mounts :func:`create_app` on the Airflow API server under
``/data-quality``; tests mount it on their own. It reads what the DAG's publish task records
(``greenery_audit.validation_runs`` and ``publish_log``, see :mod:`greenery.wap`) and serves the GX
Data Docs built by the validate task.

Routes (relative to the mount point):

- ``/``             HTML: the latest validation run, one row per table, failing checks, quarantine, history
- ``/api/latest``   JSON: the latest run and the latest result of every table
- ``/docs/{path}``  the GX Data Docs (static files under ``<gx_dir>/gx/uncommitted/data_docs/local_site``)
- ``/icon.svg``     the nav icon

A table's row is its latest validation: usually the latest run's, but a run whose validate task was
cleared alone re-checks only the models it rebuilt, so other tables show the run that last checked them.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from pathlib import Path
from typing import Any

import jinja2
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from markupsafe import Markup, escape
from psycopg import sql

from greenery import wap

log = logging.getLogger(__name__)

DAG_ID = "greenery_daily"
HISTORY_LIMIT = 10
# Reading the audit tables is cheap; never hold one of the API server's threads for long.
STATEMENT_TIMEOUT_MS = 15_000
NO_STORE = {"Cache-Control": "no-store"}
_BUILD_TABLE = re.compile(rf"^{re.escape(wap.BUILD_PREFIX)}\d{{8}}_[0-9a-f]+__(?P<layer>[^.]+)\.(?P<name>.+)$")


class WarehouseError(RuntimeError):
    """The warehouse could not be reached or read; the message is safe to show to a UI user."""


# ---------------------------------------------------------------------------------------------------
# Reading the audit tables
# ---------------------------------------------------------------------------------------------------


def _runs_table() -> sql.Identifier:
    return sql.Identifier(wap.AUDIT_SCHEMA, "validation_runs")


def _utc(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat() if value is not None else None


def _day(value: dt.date | str | None) -> str | None:
    return value.isoformat() if isinstance(value, dt.date) else value


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def display_table(table: str | None) -> str | None:
    """``_build_20240101_ab12cd34__marts.fact_orders`` (where a run validated it) -> ``marts.fact_orders``."""
    if not table:
        return table
    found = _BUILD_TABLE.match(table)
    return f"{found['layer']}.{found['name']}" if found else table


def table_status(failed_critical: int, failed_warning: int) -> str:
    return "failed" if failed_critical else "warning" if failed_warning else "passed"


def recent_runs(conn, limit: int = HISTORY_LIMIT) -> list[dict[str, Any]]:
    """The last ``limit`` recorded validations, newest first, with their totals (not their failures)."""
    rows = conn.execute(
        sql.SQL(
            "select run_id, logical_date, validated_at, published,"
            " summary->'evaluated', summary->'failed_critical', summary->'failed_warning',"
            " summary->'failures_total', summary->'quarantined', summary->'dag_id', summary->'log_url'"
            " from {} order by validated_at desc limit %s"
        ).format(_runs_table()),
        (limit,),
    ).fetchall()
    runs = []
    for row in rows:
        run_id, day, at, published, evaluated, critical, warning, total, quarantined, dag, url = row
        runs.append(
            {
                "run_id": run_id,
                "logical_date": _day(day),
                "validated_at": _utc(at),
                "published": published,
                "dag_id": dag if isinstance(dag, str) else DAG_ID,
                "evaluated": _count(evaluated),
                "failed_critical": _count(critical),
                "failed_warning": _count(warning),
                "failures_total": _count(total) if total is not None else None,
                "quarantined": {str(k): _count(v) for k, v in (quarantined or {}).items()}
                if isinstance(quarantined, dict)
                else {},
                "log_url": url if isinstance(url, str) else None,
            }
        )
    return runs


def latest_per_table(conn) -> list[dict[str, Any]]:
    """Every suite's latest result (from the newest run that validated it), with that run's failures of it."""
    array = "case when jsonb_typeof({col}) = 'array' then {col} else '[]'::jsonb end"
    query = sql.SQL(
        "with latest as ("
        " select distinct on (s.value->>'suite')"
        " r.run_id, r.logical_date, r.validated_at, r.published, s.value as suite"
        " from {runs} r cross join lateral jsonb_array_elements(" + array.format(col="r.summary->'suites'") + ") s"
        " where jsonb_typeof(s.value) = 'object' and s.value->>'suite' is not null"
        " order by s.value->>'suite', r.validated_at desc)"
        " select l.run_id, l.logical_date, l.validated_at, l.published, l.suite,"
        " coalesce((select jsonb_agg(f.value order by f.n) from {runs} r2 cross join lateral jsonb_array_elements("
        + array.format(col="r2.summary->'failures'")
        + ") with ordinality f(value, n)"
        " where r2.run_id = l.run_id and r2.validated_at = l.validated_at"
        " and f.value->>'suite' = l.suite->>'suite'), '[]'::jsonb)"
        " from latest l"
    ).format(runs=_runs_table())
    tables = []
    for run_id, day, at, published, suite, failures in conn.execute(query).fetchall():
        critical, warning = _count(suite.get("failed_critical")), _count(suite.get("failed_warning"))
        tables.append(
            {
                "suite": suite.get("suite"),
                "table": display_table(suite.get("table")),
                "validated_table": suite.get("table"),
                "evaluated": _count(suite.get("evaluated")),
                "failed_critical": critical,
                "failed_warning": warning,
                "status": table_status(critical, warning),
                "run_id": run_id,
                "logical_date": _day(day),
                "validated_at": _utc(at),
                "published": published,
                "failures": [_failure(f) for f in failures if isinstance(f, dict)],
            }
        )
    rank = {"failed": 0, "warning": 1, "passed": 2}
    tables.sort(key=lambda t: (rank[t["status"]], t["table"] or "", t["suite"] or ""))
    return tables


def _failure(f: dict[str, Any]) -> dict[str, Any]:
    samples = f.get("sample_keys")
    return {
        "suite": f.get("suite"),
        "table": display_table(f.get("table")),
        "column": f.get("column"),
        "expectation": f.get("expectation"),
        "severity": f.get("severity") or "critical",
        "description": f.get("description"),
        "observed_value": f.get("observed_value"),
        "unexpected_count": f.get("unexpected_count"),
        "sample_keys": [str(s) for s in samples] if isinstance(samples, list) else [],
        "error": f.get("error"),
    }


def report(conn, history_limit: int = HISTORY_LIMIT) -> dict[str, Any]:
    """Everything the page and the JSON endpoint show; ``latest_run`` is None before the first validation."""
    if not wap.table_exists(conn, wap.AUDIT_SCHEMA, "validation_runs"):
        runs, tables = [], []
    else:
        runs, tables = recent_runs(conn, history_limit), latest_per_table(conn)
    last = wap.last_published(conn)
    serving = None
    if last:
        serving = {**last, "published_at": _utc(last["published_at"])}
    latest = runs[0] if runs else None
    for table in tables:
        table["in_latest_run"] = latest is not None and table["run_id"] == latest["run_id"]
    failures = [f for t in tables for f in t["failures"]]
    failures.sort(key=lambda f: (f["severity"] != "critical", f["table"] or "", f["expectation"] or ""))
    return {
        "dag_id": latest["dag_id"] if latest else DAG_ID,
        "latest_run": latest,
        "serving": serving,
        "tables": tables,
        "failures": failures,
        "quarantined": latest["quarantined"] if latest else {},
        "history": runs,
    }


def read_report(history_limit: int = HISTORY_LIMIT) -> dict[str, Any]:
    """:func:`report` through the Airflow connection; raises :class:`WarehouseError` with a readable reason."""
    import psycopg

    from greenery import warehouse

    try:
        with warehouse.connect() as conn:
            conn.read_only = True
            with conn.transaction():
                conn.execute(sql.SQL("set local statement_timeout = {}").format(sql.Literal(STATEMENT_TIMEOUT_MS)))
                return report(conn, history_limit)
    except warehouse.WarehouseUnavailableError as exc:
        raise WarehouseError(str(exc)) from exc
    except psycopg.OperationalError as exc:
        raise WarehouseError(f"the warehouse connection failed: {type(exc).__name__}: {exc}".strip()) from exc
    except psycopg.Error as exc:
        log.exception("reading the validation results failed")
        raise WarehouseError(f"reading the validation results failed: {type(exc).__name__}: {exc}".strip()) from exc


# ---------------------------------------------------------------------------------------------------
# Data Docs
# ---------------------------------------------------------------------------------------------------


def docs_root() -> Path:
    from greenery import quality, validation

    return validation.data_docs_index(quality.gx_dir()).parent


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


# ---------------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------------

_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _when(value: str | None) -> str:
    if not value:
        return "—"
    return dt.datetime.fromisoformat(value).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _observed(value: Any, limit: int = 160) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, sort_keys=True, default=str, separators=(", ", ": "))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _safe_url(value: str | None) -> str | None:
    """Only http(s) or site-relative links from the summary become hrefs (never javascript: and such)."""
    if isinstance(value, str) and (value.startswith(("http://", "https://")) or value.startswith("/")):
        return value
    return None


def _breakable(value: str | None, after: str = "_.") -> Markup:
    """Escaped, with line-break opportunities after the characters ``after`` (long expectation names)."""
    text = escape(value if value is not None else "—")
    for char in after:
        text = text.replace(char, Markup(f"{char}<wbr>"))  # noqa: S704 - a literal character of ours
    return text


def _short(run_id: str | None, limit: int = 44) -> str:
    run_id = run_id or "—"
    return run_id if len(run_id) <= limit else run_id[: limit - 1] + "…"


_ENV.filters.update(when=_when, observed=_observed, safe_url=_safe_url, short=_short, breakable=_breakable)

_STYLE = """
:root { --bg:#f6f7f9; --card:#fff; --fg:#1f2430; --muted:#667085; --line:#e4e7ec; --head:#f2f4f7;
  --red:#b42318; --red-bg:#fef3f2; --red-line:#fecdca; --amber:#b54708; --amber-bg:#fffaeb; --amber-line:#fedf89;
  --green:#067647; --green-bg:#ecfdf3; --green-line:#abefc6; --blue:#175cd3; --code:#f2f4f7; }
@media (prefers-color-scheme: dark) {
  :root { --bg:#101418; --card:#1a1f26; --fg:#e6e9ee; --muted:#98a2b3; --line:#2c333d; --head:#222831;
    --red:#fda29b; --red-bg:#3a1512; --red-line:#7a271a; --amber:#fec84b; --amber-bg:#35260b; --amber-line:#7a4a0a;
    --green:#75e0a7; --green-bg:#0d2a1d; --green-line:#085d3a; --blue:#84adff; --code:#262c35; } }
* { box-sizing: border-box; }
body { margin:0; padding:24px 28px 40px; background:var(--bg); color:var(--fg);
  font:14px/1.45 -apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
a { color:var(--blue); text-decoration:none; } a:hover { text-decoration:underline; }
header { display:flex; align-items:baseline; justify-content:space-between; gap:16px; margin-bottom:18px; }
h1 { font-size:22px; margin:0; } h2 { font-size:16px; margin:0 0 10px; }
.sub { color:var(--muted); font-size:13px; }
.links a { margin-left:14px; font-size:13px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:16px 18px;
  margin-bottom:16px; }
.facts { display:grid; grid-template-columns:minmax(0, 1.6fr) repeat(3, minmax(0, 1fr)); gap:12px 20px; }
.fact .k { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.fact .v { font-size:15px; margin-top:2px; overflow-wrap:anywhere; } .fact .v.mono { font-size:13px; }
.totals { display:flex; gap:12px; margin-top:14px; }
.total { flex:1; border:1px solid var(--line); border-radius:8px; padding:8px 12px; }
.total .n { font-size:22px; font-weight:600; } .total .k { color:var(--muted); font-size:12px; }
.total.bad { border-color:var(--red-line); background:var(--red-bg); } .total.bad .n { color:var(--red); }
.total.warn { border-color:var(--amber-line); background:var(--amber-bg); } .total.warn .n { color:var(--amber); }
.banner { border-radius:8px; padding:10px 14px; margin-top:14px; border:1px solid; }
.banner.bad { background:var(--red-bg); border-color:var(--red-line); color:var(--red); }
.banner.ok { background:var(--green-bg); border-color:var(--green-line); color:var(--green); }
.banner.warn { background:var(--amber-bg); border-color:var(--amber-line); color:var(--amber); }
.banner strong { font-weight:600; }
.scroll { overflow-x:auto; } table { width:100%; border-collapse:collapse; }
th, td { text-align:left; padding:7px 10px; border-bottom:1px solid var(--line); vertical-align:top; }
th { background:var(--head); color:var(--muted); font-size:12px; font-weight:600; text-transform:uppercase;
  letter-spacing:.03em; }
tr:last-child td { border-bottom:none; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
.zero { color:var(--muted); }
.badge { display:inline-block; padding:1px 8px; border-radius:999px; font-size:12px; font-weight:600;
  border:1px solid; }
.badge.failed, .badge.critical, .badge.no { color:var(--red); background:var(--red-bg); border-color:var(--red-line); }
.badge.warning { color:var(--amber); background:var(--amber-bg); border-color:var(--amber-line); }
.badge.passed, .badge.yes { color:var(--green); background:var(--green-bg); border-color:var(--green-line); }
code, .mono { font-family:ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size:12.5px; }
code.key { background:var(--code); border-radius:4px; padding:1px 5px; margin:0 4px 3px 0; display:inline-block;
  white-space:nowrap; }
.desc { color:var(--muted); font-size:12.5px; } .err { color:var(--red); font-size:12.5px; }
.older { color:var(--amber); font-size:12px; }
.empty { text-align:center; padding:36px 18px; }
.empty .big { font-size:18px; font-weight:600; margin-bottom:6px; }
.error-card { border-color:var(--red-line); background:var(--red-bg); color:var(--red); }
.error-card pre { white-space:pre-wrap; overflow-wrap:anywhere; color:var(--fg); background:var(--card);
  border:1px solid var(--line); border-radius:6px; padding:10px; }
.note { color:var(--muted); font-size:12.5px; margin-top:8px; }
.row { display:grid; grid-template-columns:minmax(0, 1fr) minmax(0, 1fr); gap:16px; }
@media (max-width: 900px) { .facts { grid-template-columns:repeat(2, minmax(0, 1fr)); } .row { display:block; } }
"""

_PAGE = _ENV.from_string(
    """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Data quality · {{ dag_id }}</title>
<style>{{ style | safe }}</style>
</head>
<body>
<header>
  <div>
    <h1>Data quality</h1>
    <div class="sub">Great Expectations results of <span class="mono">{{ dag_id }}</span>,
      recorded by its publish step</div>
  </div>
  <nav class="links">
    {% if docs %}<a href="docs/">Data Docs</a>{% endif %}
    <a href="api/latest">JSON</a>
  </nav>
</header>
{% if error %}
<section class="card error-card" role="alert">
  <h2>The warehouse cannot be reached</h2>
  <p>The validation results live in the warehouse (<span class="mono">greenery_audit.validation_runs</span>),
  and reading them failed. Check the Airflow connection <span class="mono">greenery_warehouse</span>
  and that the database is up, then reload this page.</p>
  <pre>{{ error }}</pre>
</section>
{% elif not run %}
<section class="card empty">
  <div class="big">No validation has run yet</div>
  <div class="sub">Each run of <span class="mono">{{ dag_id }}</span> records its validation here once its
  publish step has run.{% if serving %} The marts currently hold the run of {{ serving.logical_date }}.{% endif %}</div>
</section>
{% else %}
<section class="card">
  <h2>Latest validation</h2>
  <div class="facts">
    <div class="fact"><div class="k">Run</div>
      <div class="v mono" title="{{ run.run_id }}">{{ run.run_id | short }}</div></div>
    <div class="fact"><div class="k">Logical date</div><div class="v">{{ run.logical_date }}</div></div>
    <div class="fact"><div class="k">Validated at</div><div class="v">{{ run.validated_at | when }}</div></div>
    <div class="fact"><div class="k">Published</div><div class="v">
      {% if run.published %}<span class="badge yes">published</span>
      {% else %}<span class="badge no">not published</span>{% endif %}
      {% if run.log_url | safe_url %} · <a href="{{ run.log_url | safe_url }}">task log</a>{% endif %}
    </div></div>
  </div>
  <div class="totals">
    {% macro total(n, label, alarm="") %}
    <div class="total{% if n %} {{ alarm }}{% endif %}">
      <div class="n">{{ n }}</div><div class="k">{{ label }}</div></div>
    {% endmacro %}
    {{ total(run.evaluated, "expectations evaluated") }}
    {{ total(run.failed_critical, "critical failures", "bad") }}
    {{ total(run.failed_warning, "warnings", "warn") }}
    {{ total(quarantined_total, "rows quarantined", "warn") }}
  </div>
  {% if not run.published %}
  <div class="banner bad"><strong>Not published.</strong>
    {% if run.failed_critical %}{{ run.failed_critical }} critical check{{ "s" if run.failed_critical != 1 else "" }}
    failed, so this run's tables were held back. {% endif %}
    {% if serving %}Readers are still served the run of <strong>{{ serving.logical_date }}</strong>
    (<span class="mono">{{ serving.run_id | short }}</span>, published {{ serving.published_at | when }}).
    {% else %}Nothing has been published yet: the marts are empty.{% endif %}
  </div>
  {% elif run.failed_warning or quarantined_total %}
  <div class="banner warn"><strong>Published with warnings.</strong>
    Readers see this run; review the checks below.</div>
  {% else %}
  <div class="banner ok"><strong>Published.</strong> Every check passed; readers see this run.</div>
  {% endif %}
</section>

<section class="card">
  <h2>Tables</h2>
  <div class="scroll"><table>
    <thead><tr><th>Table</th><th>Status</th><th class="num">Evaluated</th><th class="num">Failed critical</th>
      <th class="num">Failed warning</th><th>Checked in</th></tr></thead>
    <tbody>
    {% for t in tables %}
      <tr>
        <td><span class="mono" title="{{ t.validated_table }}">{{ t.table }}</span>
          {% if t.suite and t.table and t.suite != t.table.split('.')[-1] %}
          <div class="desc">suite {{ t.suite }}</div>{% endif %}</td>
        <td><span class="badge {{ t.status }}">{{ t.status }}</span></td>
        <td class="num">{{ t.evaluated }}</td>
        <td class="num{% if not t.failed_critical %} zero{% endif %}">{{ t.failed_critical }}</td>
        <td class="num{% if not t.failed_warning %} zero{% endif %}">{{ t.failed_warning }}</td>
        <td>{% if t.in_latest_run %}<span class="zero">this run</span>{% else %}<span class="older"
          title="{{ t.run_id }}">run of {{ t.logical_date }} (not re-checked since)</span>{% endif %}</td>
      </tr>
    {% endfor %}
    </tbody>
  </table></div>
</section>

<section class="card">
  <h2>Failing checks</h2>
  {% if failures %}
  <div class="scroll"><table>
    <thead><tr><th>Severity</th><th>Table</th><th>Column</th><th>Expectation</th><th>Observed value</th>
      <th class="num">Unexpected</th><th>Sample keys</th></tr></thead>
    <tbody>
    {% for f in failures %}
      <tr>
        <td><span class="badge {{ 'critical' if f.severity == 'critical' else 'warning' }}">{{ f.severity }}</span></td>
        <td class="mono">{{ f.table | breakable(".") }}</td>
        <td class="mono">{{ f.column | breakable }}</td>
        <td><span class="mono">{{ f.expectation | breakable }}</span>
          {% if f.description %}<div class="desc">{{ f.description }}</div>{% endif %}
          {% if f.error %}<div class="err">error: {{ f.error }}</div>{% endif %}</td>
        <td class="mono">{{ f.observed_value | observed }}</td>
        <td class="num">{{ f.unexpected_count if f.unexpected_count is not none else "—" }}</td>
        <td>{% for k in f.sample_keys %}<code class="key">{{ k }}</code>
          {% else %}<span class="zero">—</span>{% endfor %}</td>
      </tr>
    {% endfor %}
    </tbody>
  </table></div>
  {% if run.failures_total and run.failures_total > run_failures_shown %}
  <div class="note">The run recorded {{ run.failures_total }} failing checks;
    the first {{ run_failures_shown }} are kept.</div>
  {% endif %}
  {% else %}
  <div class="zero">No failing checks.</div>
  {% endif %}
</section>

<div class="row">
<section class="card">
  <h2>Quarantined rows <span class="sub">· run of {{ run.logical_date }}</span></h2>
  {% if quarantined %}
  <div class="scroll"><table>
    <thead><tr><th>Model</th><th class="num">Rows held back</th></tr></thead>
    <tbody>
    {% for model, n in quarantined | dictsort %}
      <tr><td class="mono">{{ model }}</td><td class="num">{{ n }}</td></tr>
    {% endfor %}
    </tbody>
  </table></div>
  <div class="note">Rows breaking a row-level rule were kept out of the models,
    in schema <span class="mono">quarantine</span>.</div>
  {% else %}
  <div class="zero">No rows were quarantined.</div>
  {% endif %}
</section>
<section class="card">
  <h2>Data Docs</h2>
  {% if docs %}
  <p><a href="docs/">Open the Great Expectations Data Docs</a> for every expectation's full result.</p>
  {% else %}
  <div class="zero">The Data Docs have not been built yet (the validate task builds them).</div>
  {% endif %}
</section>
</div>
{% endif %}

{% if history %}
<section class="card">
  <h2>Recent runs</h2>
  <div class="scroll"><table>
    <thead><tr><th>Validated at</th><th>Logical date</th><th>Run</th><th class="num">Evaluated</th>
      <th class="num">Critical</th><th class="num">Warnings</th><th>Published</th></tr></thead>
    <tbody>
    {% for h in history %}
      <tr>
        <td>{{ h.validated_at | when }}</td>
        <td>{{ h.logical_date }}</td>
        <td class="mono" title="{{ h.run_id }}">{{ h.run_id | short(36) }}</td>
        <td class="num">{{ h.evaluated }}</td>
        <td class="num{% if not h.failed_critical %} zero{% endif %}">{{ h.failed_critical }}</td>
        <td class="num{% if not h.failed_warning %} zero{% endif %}">{{ h.failed_warning }}</td>
        <td>{% if h.published %}<span class="badge yes">yes</span>
          {% else %}<span class="badge no">no</span>{% endif %}</td>
      </tr>
    {% endfor %}
    </tbody>
  </table></div>
</section>
{% endif %}
</body>
</html>
"""
)

_UNAUTHORIZED = _ENV.from_string(
    """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Data quality</title>
<style>{{ style | safe }}</style></head><body>
<section class="card error-card"><h2>{{ title }}</h2><p>{{ detail }}</p>
<p><a href="{{ home }}">Open Airflow</a> and sign in, then come back to this page.</p></section></body></html>
"""
)

_ICON = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" fill="none" stroke="{color}" stroke-width="2"
 stroke-linecap="round" stroke-linejoin="round"><path d="M12 3l8 3v6c0 4.5-3.4 8.3-8 9-4.6-.7-8-4.5-8-9V6z"/>
<path d="M8.5 12l2.5 2.5 4.5-5"/></svg>"""


def render_page(data: dict[str, Any] | None, *, error: str | None = None, docs: bool = False) -> str:
    data = data or {"dag_id": DAG_ID, "latest_run": None, "serving": None, "tables": [], "failures": []}
    run = data.get("latest_run")
    quarantined = data.get("quarantined") or {}
    return _PAGE.render(
        style=_STYLE,
        error=error,
        docs=docs,
        dag_id=data["dag_id"],
        run=run,
        serving=data.get("serving"),
        tables=data["tables"],
        failures=data["failures"],
        run_failures_shown=sum(len(t["failures"]) for t in data["tables"] if t.get("in_latest_run")),
        quarantined=quarantined,
        quarantined_total=sum(quarantined.values()),
        history=data.get("history") or [],
    )


# ---------------------------------------------------------------------------------------------------
# The app
# ---------------------------------------------------------------------------------------------------


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
            method="GET", access_entity=DagAccessEntity.RUN, details=DagDetails(id=DAG_ID), user=user
        )
        if not allowed:
            raise HTTPException(403, f"Forbidden: you may not read the runs of DAG {DAG_ID}")

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
            page = _UNAUTHORIZED.render(style=_STYLE, title=title, detail=str(exc.detail), home=home)
            return HTMLResponse(page, status_code=exc.status_code, headers=NO_STORE)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @router.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        docs = docs_file("index.html") is not None
        try:
            data = read_report(history_limit)
        except WarehouseError as exc:
            return HTMLResponse(render_page(None, error=str(exc), docs=docs), status_code=503, headers=NO_STORE)
        return HTMLResponse(render_page(data, docs=docs), headers=NO_STORE)

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
        return FileResponse(found)

    @app.get("/icon.svg", include_in_schema=False)
    @app.get("/icon-dark.svg", include_in_schema=False)
    def icon(request: Request) -> Response:
        color = "#e6e9ee" if request.url.path.endswith("-dark.svg") else "#344054"
        return Response(_ICON.format(color=color), media_type="image/svg+xml")

    app.include_router(router)
    return app
