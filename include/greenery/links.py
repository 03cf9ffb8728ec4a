"""Links into this deployment's Airflow, built from its own base URL (Airflow's ``[api] base_url``).

Never a hard-coded host or port: ``greenery ui`` sets the base URL to where it really listens, a
deployment sets it to its public address, and every URL in Slack, in the Data quality view and in the
stakeholder note follows it.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from greenery import config
from greenery.redaction import without_login

# The Data quality view's mount point on the API server (plugins/greenery_quality_plugin.py).
QUALITY_PATH = "data-quality"


def base_url() -> str:
    from airflow.configuration import conf  # Airflow's own setting, read where Airflow keeps it

    return conf.get("api", "base_url", fallback="http://localhost:8080/").rstrip("/")


def run_url(run_id: str, base: str | None = None) -> str:
    return f"{base or base_url()}/dags/{quote(config.DAG_ID)}/runs/{quote(run_id, safe='')}"


def task_url(run_id: str, task_id: str, base: str | None = None) -> str:
    return f"{run_url(run_id, base)}/tasks/{quote(task_id)}"


def quality_url(run_id: str | None = None, base: str | None = None) -> str:
    query = f"?{urlencode({'run_id': run_id})}" if run_id else ""
    return f"{base or base_url()}/{QUALITY_PATH}/{query}"


def docs_url(page: str = "", base: str | None = None) -> str:
    """A Data Docs page as the plugin serves it (sandboxed, behind the Airflow login)."""
    override = config.get_lenient()[0].data_docs_base_url  # an alert about a bad setting still gets its links
    # Its login, if it has one, is the browser's to ask for: not in the view's links, its JSON, nor the alerts (review).
    root = without_login(override).rstrip("/") if override else f"{base or base_url()}/{QUALITY_PATH}/docs"
    return f"{root}/{quote(page)}" if page else f"{root}/"


def for_run(run_id: str, task_id: str | None = None) -> dict[str, str]:
    """The links an alert about a run carries: the run, the task's log, the Data quality view, Data Docs."""
    base = base_url()
    links = {"run": run_url(run_id, base), "quality": quality_url(run_id, base), "docs": docs_url(base=base)}
    if task_id:
        links["log"] = task_url(run_id, task_id, base)
    return links
