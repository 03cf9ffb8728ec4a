"""``greenery ui``: Airflow 3's UI, scheduler and DAG processor on this machine, without Docker.

:func:`start` runs ``airflow api-server``, ``scheduler``, ``dag-processor`` (and ``triggerer``), each through
``greenery-airflow`` (preloaded_airflow.py: the collector's thresholds; GX imported first by the scheduler), as
subprocesses of one private Airflow home (``.greenery/airflow`` for the CLI: SQLite metadata DB, LocalExecutor) with
this project's dags and plugins folders; returns a :class:`LocalAirflow` handle;
:func:`serve` is the CLI's foreground loop around it (Ctrl-C stops everything). The warehouse is whatever
the Airflow connection ``greenery_warehouse`` points at: the CLI starts the embedded PostgreSQL first when
none is configured, as the other commands do.

Local only, on purpose:

- the API server listens on 127.0.0.1 and the simple auth manager makes every visitor an admin
  (``AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True``): no login;
- the scheduler creates no scheduled runs (``[scheduler] use_job_schedule = False``): the runs are the ones
  you trigger, with a logical date inside the data you loaded (the DAG's ``@daily`` schedule would
  otherwise start a run for yesterday, for which there is no raw data);
- the JWT secret and the log-signing key are made up per start and shared by the components;
- the log servers of the scheduler and the triggerer get free ports, so another local Airflow does not
  clash with this one.

Component output goes to ``<home>/ui-logs/<component>.log``; task logs to ``<home>/logs``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from greenery import config, preloaded_airflow, redaction
from greenery.dev import addresses, local_airflow, metadata_db
from greenery.dev.addresses import cannot_listen, free_port

DAG_ID = config.DAG_ID
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"


class LocalUIError(RuntimeError):
    """The local Airflow could not start or stopped by itself; the message says which part and why."""


def airflow_env(
    home: Path, port: int, host: str = "127.0.0.1", base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of the Airflow processes: ``base`` (default: this process's) plus the local setup."""
    env = dict(os.environ if base is None else base)
    # Links start at the user's own base URL (a proxy, a tunnel) when set, else where the server listens (review:
    # the user's was replaced); the components reach each other on this machine, under the same path.
    base_url = env.get("AIRFLOW__API__BASE_URL") or f"http://{addresses.url_host(addresses.browser_host(host))}:{port}"
    local_url = f"http://{addresses.url_host(addresses.local_host(host))}:{port}{urllib.parse.urlsplit(base_url).path.rstrip('/')}"
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__API__HOST": host,
            "AIRFLOW__API__PORT": str(port),
            # Every link Airflow and this project build (task logs, alerts, the Data quality view) starts
            # here: where the API server really listens, not Airflow's default localhost:8080.
            "AIRFLOW__API__BASE_URL": base_url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{local_url}/execution/",
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        }
    )
    # The same secrets for every component, else tasks cannot authenticate to the Execution API.
    env.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", secrets.token_urlsafe(64))
    env.setdefault("AIRFLOW__API__SECRET_KEY", secrets.token_urlsafe(64))
    # As local_airflow.configure() sets them for the in-process runs.
    env.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    env.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(local_airflow.DAG_FILE.parent))
    env.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(local_airflow.PROJECT_DIR / "plugins"))
    env.setdefault("GX_ANALYTICS_ENABLED", "false")
    metadata_db.no_backfills_on_sqlite(home, env)
    # Speed (README, "Settings it applies for speed", measured by make bench): a task's exit is seen within 1 s,
    # not 5 (its supervisor's wait between heartbeats); warm LocalExecutor workers (a worker's first task pays
    # ~0.4 CPU-s of set-up; at the default 32 nearly every task got a cold one); the scheduler's sleep after an
    # idle loop, which each finished task waited out before its downstream was queued (default 1 s).
    env.setdefault("AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL", "1")
    env.setdefault("AIRFLOW__CORE__PARALLELISM", str(max(4, 2 * (os.cpu_count() or 2))))
    env.setdefault("AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME", "0.25")
    # The package is installed in the venv; this also covers running from a plain checkout.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(config.INCLUDE_DIR), env.get("PYTHONPATH")) if p)
    return env


def _airflow_executable() -> str:
    found = Path(sys.executable).with_name("airflow")
    return str(found) if found.exists() else "airflow"


@dataclass
class LocalAirflow:
    """Handles of the running components; use as a context manager or call :meth:`stop`."""

    home: Path
    port: int
    host: str
    env: dict[str, str]
    log_dir: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    _token: str | None = None

    @property
    def url(self) -> str:
        """The address for a browser: Airflow's base URL."""
        return self.env["AIRFLOW__API__BASE_URL"].rstrip("/")

    @property
    def api_url(self) -> str:
        """The server as this machine reaches it (under the base URL's path)."""
        return self.env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].removesuffix("/execution/")

    # --- processes -------------------------------------------------------------------------------------

    def exited(self) -> dict[str, int]:
        """Components that have stopped, with their exit codes."""
        return {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def diagnostics(self, lines: int = 40) -> str:
        parts = []
        for name, proc in self.processes.items():
            state = "running" if proc.poll() is None else f"exited with {proc.returncode}"
            parts.append(
                f"--- {name} ({state}), last lines of {self.log_dir / (name + '.log')}:\n{self.log_tail(name, lines)}"
            )
        return "\n".join(parts)

    def _check_alive(self) -> None:
        if dead := self.exited():
            name, code = next(iter(dead.items()))
            raise LocalUIError(
                f"airflow {name} exited with {code}; see {self.log_dir / (name + '.log')}:\n{self.log_tail(name)}"
            )

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM each component's process group (the scheduler's task processes too); SIGKILL what is left.

        The scheduler, triggerer and dag-processor go first, together; the API server, which running tasks
        report to, last.
        """
        producers = [n for n in self.processes if n != "api-server"]
        phases = [producers, [n for n in self.processes if n not in producers]]
        try:
            for phase in phases:
                for name in phase:
                    self._signal(name, signal.SIGTERM)
                deadline = time.monotonic() + timeout / 2
                for name in phase:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self.processes[name].wait(timeout=max(0.1, deadline - time.monotonic()))
        except KeyboardInterrupt:
            pass  # a second Ctrl-C: no more waiting
        finally:
            for name, proc in self.processes.items():
                self._signal(name, signal.SIGKILL)  # the group: children that outlived their parent too
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)

    def _signal(self, name: str, sig: int) -> None:
        proc = self.processes[name]
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)  # start_new_session=True: the group id is the pid

    def __enter__(self) -> LocalAirflow:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- REST API --------------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, timeout: float = 30.0) -> tuple[int, Any]:
        """(status, parsed JSON) of an API call; authenticated with a token from ``GET /auth/token``."""
        headers = {"Accept": "application/json"}
        if not path.startswith("/auth/"):
            headers["Authorization"] = f"Bearer {self.token()}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.api_url + path, data=data, headers=headers, method=method)  # noqa: S310
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (our own local server)
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def token(self) -> str:
        """A JWT for the REST API. With all-admins the server adds one itself; asking keeps clients explicit."""
        if self._token is None:
            status, body = self.request("GET", "/auth/token")
            if status not in (200, 201) or not isinstance(body, dict) or "access_token" not in body:
                raise LocalUIError(f"GET /auth/token answered {status}: {body}")
            self._token = body["access_token"]
        return self._token

    def version(self) -> str | None:
        """Airflow's version once the API server answers, else None."""
        try:
            status, body = self.request("GET", "/api/v2/version", timeout=5)
        except (OSError, urllib.error.URLError):
            return None
        return body.get("version") if status == 200 and isinstance(body, dict) else None

    def wait_ready(self, timeout: float = 120.0) -> str:
        """Wait for ``/api/v2/version``; return the version. Raises if a component exits or on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if version := self.version():
                self._warm_execution_api(deadline - time.monotonic())
                return version
            time.sleep(0.5)
        raise LocalUIError(
            f"the API server did not answer on {self.api_url} within {timeout:.0f}s\n{self.diagnostics()}"
        )

    def _warm_execution_api(self, timeout: float) -> None:
        """Have the Task Execution API build its routes (Cadwyn's versioned routers) before a task needs them:
        it does on its first request, in 6 s on a busy 2-core machine, so a first task's call (5 s timeout)
        timed out and was retried."""
        try:
            status, body = self.request("GET", "/execution/health", timeout=max(timeout, 1.0))
        except (OSError, urllib.error.URLError) as exc:
            raise LocalUIError(f"the Task Execution API on {self.api_url} did not answer: {exc}") from exc
        if status != 200:
            raise LocalUIError(f"GET /execution/health answered {status}: {body}\n{self.diagnostics()}")

    def dag(self, dag_id: str = DAG_ID) -> dict | None:
        status, body = self.request("GET", f"/api/v2/dags/{dag_id}")
        return body if status == 200 else None

    def import_errors(self) -> list[dict]:
        status, body = self.request("GET", "/api/v2/importErrors")
        return body.get("import_errors", []) if status == 200 and isinstance(body, dict) else []

    def wait_for_dag(self, dag_id: str = DAG_ID, timeout: float = 120.0) -> dict:
        """Wait until the dag-processor has parsed ``dag_id``; raise with the import errors if it does not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if found := self.dag(dag_id):
                return found
            time.sleep(0.5)
        raise LocalUIError(f"DAG {dag_id} not parsed within {timeout:.0f}s; import errors: {self.import_errors()}")


def start(
    home: Path,
    port: int = 8080,
    host: str = "127.0.0.1",
    components: Iterable[str] = COMPONENTS,
    env: Mapping[str, str] | None = None,
) -> LocalAirflow:
    """Migrate the metadata DB of ``home`` (local_airflow.may_skip_migration) and start the components; return them.

    ``env`` is the base environment (default: this process's, which carries the warehouse connection).
    The components run in their own process groups, so a terminal's Ctrl-C reaches only the caller,
    which stops them with :meth:`LocalAirflow.stop`.
    """
    home = Path(home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    components = tuple(components)
    unknown = set(components) - set(COMPONENTS)
    if unknown:
        raise ValueError(f"unknown components {sorted(unknown)}; choose from {COMPONENTS}")
    if "api-server" in components and (why := cannot_listen(port, host)):
        raise LocalUIError(why)
    ui = LocalAirflow(home=home, port=port, host=host, env=airflow_env(home, port, host, env), log_dir=home / "ui-logs")
    local_airflow.record_base_url(home, ui.env["AIRFLOW__API__BASE_URL"])  # for `greenery run` on this home
    airflow = _airflow_executable()
    with local_airflow.one_migration_at_a_time(home):  # not where this Airflow's own migration is stamped (3 s)
        if not local_airflow.may_skip_migration(home, ui.env):
            if (migrated := local_airflow.migrate(airflow, env=ui.env, cwd=home)).returncode != 0:
                raise LocalUIError(f"airflow db migrate failed in {home}:\n{migrated.stderr[-3000:]}")
            local_airflow.record_migration(home, ui.env)
    return launch(ui, airflow, components)


def launch(ui: LocalAirflow, airflow: str, components: Iterable[str] = COMPONENTS) -> LocalAirflow:
    """Start ``components`` with the ``airflow`` executable, through ``greenery-airflow`` where it is installed
    beside it (preloaded_airflow.py: the collector's thresholds for all, GX imported first by the scheduler), each
    logging to ``ui.log_dir/<name>.log``, in its own process group; on any error stop what already started."""
    ui.log_dir.mkdir(exist_ok=True)
    try:
        for name in components:
            args = ["--host", ui.host, "--port", str(ui.port)] if name == "api-server" else []
            with (ui.log_dir / f"{name}.log").open("wb") as log:
                ui.processes[name] = subprocess.Popen(
                    [preloaded_airflow.beside(airflow), name, *args],
                    env=ui.env,
                    cwd=ui.home,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
    except BaseException:
        ui.stop()
        raise
    return ui


def serve(
    home: Path,
    port: int = 8080,
    host: str = "127.0.0.1",
    components: Iterable[str] = COMPONENTS,
    stop_line: str = "Ctrl-C stops Airflow",
    embedded: bool = True,
) -> int:
    """Start, print where to look (last, ``stop_line``: what Ctrl-C stops), and wait for Ctrl-C (or SIGTERM);
    stop everything on the way out. For the process's end: SIGTERM and SIGHUP stay ignored after it."""
    from importlib.metadata import version

    print(f"starting Airflow {version('apache-airflow')} ({', '.join(components)}) in {home} ...", flush=True)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    ui, settings = None, config.get()
    # Review: with a configured warehouse it offered `greenery demo`, which never writes there.
    load = "load it with `greenery " + ("demo` (generated) or `greenery load-raw DIR`" if embedded else "load-raw DIR`")
    try:
        ui = start(home, port, host, components)
        ui.wait_ready()
        print(
            f"\nAirflow UI: {ui.url}\n"
            "  login: none, every visitor is an admin (simple auth manager with"
            f" AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True); {_exposure(host)}\n"
            f"  DAG {DAG_ID}: {ui.url}/dags/{DAG_ID} (shows up once the dag-processor has parsed it)\n"
            "  runs: no scheduled runs here; unpause the DAG and Trigger it with a logical date inside the raw\n"
            "        data (the real Greenery data: 2021-02-11 or 2021-02-12); Clear a task to rerun it\n"
            f"  data: the DAG reads {settings.raw_schema}.* through the connection {settings.warehouse_conn_id};\n"
            f"        {load}\n"
            f"  logs: {ui.log_dir}/<component>.log, task logs under {home / 'logs'}\n"
            f"{stop_line}.\n",
            flush=True,
        )
        if not ui.env.get("AIRFLOW_CONN_SLACK_ALERTS"):
            print(
                "note: AIRFLOW_CONN_SLACK_ALERTS is not set: unless you add the connection slack_alerts"
                " (Admin -> Connections), alert_slack fails when a check fails",
                flush=True,
            )
        announced = False
        while True:
            ui._check_alive()
            with contextlib.suppress(OSError):  # a busy API server may not answer at once
                if not announced and ui.dag(DAG_ID):
                    print(f"{DAG_ID} is parsed: {ui.url}/dags/{DAG_ID}", flush=True)
                    announced = True
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nstopping Airflow ...", flush=True)
        return 0
    except LocalUIError as exc:  # it may quote Airflow's own output: masked as every error line (review)
        print(f"error: {redaction.redact(str(exc))}", file=sys.stderr)
        return 1
    finally:
        # Stopping, whatever stopped it (Ctrl-C, SIGTERM, a closed terminal's SIGHUP): another signal now would cut
        # the components' orderly stop short (review). The command ends after it, so they stay ignored.
        for stop in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(stop, signal.SIG_IGN)
        if ui is not None:
            ui.stop()


def _exposure(host: str) -> str:
    if host in ("127.0.0.1", "localhost", "::1"):
        return f"listening on {host} only"
    return f"WARNING: listening on {host}: whoever can reach this port is an admin"


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
