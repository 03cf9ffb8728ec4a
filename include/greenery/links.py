"""Links into this deployment's Airflow, built from its own base URL (Airflow's ``[api] base_url``).

Never a hard-coded host or port: ``greenery ui`` sets the base URL to where it really listens, a
deployment sets it to its public address, and every URL in Slack, in the Data quality view and in the
stakeholder note follows it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from urllib.parse import quote, urlencode

from greenery import config
from greenery.redaction import without_login

# The Data quality view's mount point on the API server (plugins/greenery_quality_plugin.py).
QUALITY_PATH = "data-quality"

# `greenery run` runs its days' tasks in its own process (dag.test): their alerts give the command that runs the
# day again, not only a UI's Clear, whose `greenery ui` may not be running (user trial). Set while a day runs.
_RERUN: list[str | None] = [None]


@contextlib.contextmanager
def rerun_with(command: str) -> Iterator[None]:
    """While the command in this process runs a day: its alerts say to run the day again with ``command``, unless
    an outer one was given (``greenery demo`` runs its day as ``greenery run`` does, on its own database)."""
    outer = _RERUN[0]
    _RERUN[0] = outer or command
    try:
        yield
    finally:
        _RERUN[0] = outer


# Where a whole run is cleared, in Airflow 3.3's words (user trial: its UI has no "Clear run"; and "Clear only failed
# tasks" after fixing raw fails again, on the raw-changed check).
CLEAR_STEPS = "Clear, shift+C → Clear existing tasks"
# A day with a run at 00:00 cannot be triggered at 00:00 again (one run per logical date; UI trial: 409 Conflict), and
# a clear keeps the run's Params: a full_refresh of a day is a new trigger, at any other time of the day.
TRIGGER_FULL_REFRESH = (
    "trigger the day with the Param full_refresh ticked (in the trigger form at a time other than its runs', such as"
    " 01:00: any time builds that UTC day)"
)
CLEAR_IN_THE_GRID = f"Grid → this run → {CLEAR_STEPS}"
CLEAR_THE_RUN = f"clear the whole run ({CLEAR_IN_THE_GRID})"


def run_again(in_airflow: str) -> str:
    """How a task's message tells its reader to run the day again: ``in_airflow`` (the UI's way), or, while a command
    here runs the day (``rerun_with``), that command: its terminal prints the message, and no UI may be running
    (trial: `greenery run` said "Grid → this run → Clear run" while its page gave the command)."""
    return f"run the day again with `{_RERUN[0]}`" if _RERUN[0] else in_airflow


def rebuild_from_raw() -> str:
    """The step when raw changed under a run's build: nothing to fix (user trial: its page said "Fix the cause")."""
    return f"Nothing to fix: {run_again(CLEAR_THE_RUN)}, which rebuilds from raw as it is now."


def base_url() -> str:
    """Airflow's ``[api] base_url`` without a login it may carry (review: the digest's email, which goes to the
    stakeholders, printed ``https://ops:password@...`` in every link; the Slack buttons stripped it)."""
    from airflow.configuration import conf  # Airflow's own setting, read where Airflow keeps it

    return without_login(conf.get("api", "base_url", fallback="http://localhost:8080/")).rstrip("/")


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


def for_run(run_id: str, task_id: str | None = None, try_number: int | None = None) -> dict[str, str]:
    """The links an alert about a run carries: the run, the task's log (of its try ``try_number``: user trial, an old
    alert opened the newest try's log after a clear), the Data quality view, Data Docs, and the command that runs its
    day again while `greenery run` runs it here."""
    base = base_url()
    links = {"run": run_url(run_id, base), "quality": quality_url(run_id, base), "docs": docs_url(base=base)}
    if _RERUN[0]:
        links["rerun"] = _RERUN[0]
    if task_id:
        links["log"] = task_url(run_id, task_id, base) + (f"?try_number={try_number}" if try_number else "")
    return links
