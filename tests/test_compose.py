"""docker-compose.yaml, checked without a Docker engine: ``docker compose config`` would be the validator, but
this project's machines (CI's too) have the Docker CLI without its compose plugin, and Debian's docker-compose
is v1 (1.29), older than the Compose Specification. So it is validated against that specification's JSON schema
(vendored: tests/data/README.md), as written and with .env.example's values (the file may use only ``${VAR}``,
``${VAR:-default}`` and ``$$``: anything else fails here). The rest are the project's own checks.
"""

import contextlib
import importlib.util
import io
import itertools
import json
import re
import shlex
import subprocess
import tomllib
from pathlib import Path
from unittest import mock
from urllib.parse import urlsplit

import pytest
import yaml

PROJECT_DIR = Path(__file__).resolve().parent.parent
RAW = yaml.safe_load((PROJECT_DIR / "docker-compose.yaml").read_text())
_VAR = re.compile(r"\$(?:\$|\{(\w+)(?::-([^}]*))?\})")
AIRFLOW_IMAGE = re.compile(r"^apache/airflow:(\d+\.\d+\.\d+)-python(\d+\.\d+)$")
# Runtime dependencies the stack does not pip-install: the image has them, or (pgserver: the embedded
# PostgreSQL of the CLI and the tests) compose has a real server instead.
NOT_PIP_INSTALLED = {"apache-airflow", "apache-airflow-task-sdk", "jinja2", "psutil", "pgserver"}


def interpolate(node, env: dict[str, str]):
    """Compose's ``${VAR}``, ``${VAR:-default}`` (unset or empty: the default) and ``$$`` (a literal ``$``)."""
    if isinstance(node, dict):
        return {interpolate(k, env): interpolate(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v, env) for v in node]
    if isinstance(node, str):
        assert "$" not in _VAR.sub("", node), f"docker-compose.yaml: an interpolation this test does not know: {node}"
        return _VAR.sub(lambda m: "$" if m[1] is None else env.get(m[1]) or m[2] or "", node)
    return node


def env_example() -> tuple[dict[str, str], set[str]]:
    """(values .env.example sets, every name it mentions, commented-out ``# NAME=`` lines included)."""
    found = re.findall(r"^(#\s*)?(\w+)=(.*)$", (PROJECT_DIR / ".env.example").read_text(), flags=re.M)
    return {name: value.strip() for comment, name, value in found if not comment}, {name for _, name, _ in found}


COMPOSE = interpolate(RAW, env_example()[0])
SERVICES = COMPOSE["services"]
AIRFLOW = {name: svc for name, svc in SERVICES.items() if AIRFLOW_IMAGE.match(svc["image"])}
COMMON_ENV = COMPOSE["x-airflow-common"]["environment"]


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(PROJECT_DIR), *args], capture_output=True, text=True, check=False)


def test_compose_file_validates_against_the_compose_spec():
    import jsonschema

    # Draft7Validator by name: the schema's "$schema" spelling is one jsonschema does not map.
    validator = jsonschema.Draft7Validator(json.loads((PROJECT_DIR / "tests/data/compose-spec.json").read_text()))
    for label, model in (("as written", RAW), ("after interpolation", COMPOSE)):
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(model)]
        assert not errors, f"docker-compose.yaml {label}:\n" + "\n".join(errors)
    broken = {**COMPOSE, "services": {"x": {"comand": "scheduler", "ports": "5433:5432"}}}
    messages = " | ".join(e.message for e in validator.iter_errors(broken))
    assert "comand" in messages and "'5433:5432' is not of type 'array'" in messages
    for name, svc in SERVICES.items():  # what the schema cannot see: references to undeclared things
        volumes = {v.split(":")[0] for v in svc.get("volumes", []) if not v.startswith("./")}
        assert volumes <= set(COMPOSE["volumes"]), f"{name}: volumes {volumes - set(COMPOSE['volumes'])} not declared"
        for other, spec in svc.get("depends_on", {}).items():
            assert other in SERVICES, f"{name} depends on an unknown service {other!r}"
            if spec["condition"] == "service_completed_successfully":
                assert SERVICES[other]["restart"] == "no", f"{other} is awaited to finish: restart must be 'no'"


def _argv(value: str | list | None) -> list[str]:
    return shlex.split(value) if isinstance(value, str) else list(value or [])


PRELOADED = ["python", "-m", "greenery.preloaded_airflow"]  # `airflow` through greenery-airflow


def airflow_command(svc: dict) -> list[str]:
    """The airflow subcommand a service runs, as the image's entrypoint or through greenery.preloaded_airflow."""
    argv = _argv(svc.get("command"))
    return argv[3:] if argv[:3] == PRELOADED else argv


def commands(svc: dict) -> list[list[str]]:
    """What a service runs: its command (through the image's entrypoint), bash -c lines, health checks."""
    argv = _argv(svc.get("entrypoint")) + _argv(svc.get("command"))
    if argv and "entrypoint" not in svc and argv[0] not in ("bash", "python"):
        argv = ["airflow", *argv]  # the image's entrypoint runs anything else as an airflow subcommand
    test = svc.get("healthcheck", {}).get("test", [""])
    script = argv[2] if argv[:2] == ["bash", "-c"] else ""
    found = ([] if script else [argv]) + ([test[1:]] if test[0] == "CMD" else [])
    if argv[:3] == PRELOADED:  # `airflow`, with imports done first
        found.append(["airflow", *argv[3:]])
    for line in (script + "\n" + (test[1] if test[0] == "CMD-SHELL" else "")).splitlines():
        # A line's first command, up to && || ; | (the scripts here use no other shell syntax).
        found.append(list(itertools.takewhile(lambda w: w not in ("&&", "||", ";", "|"), shlex.split(line, True))))
    return [argv for argv in found if argv]


def problem_with(argv: list[str]) -> str | None:
    """None: not an airflow or python -m command; "": one that exists and parses; else what is wrong."""
    if argv[0] == "airflow":
        from airflow.cli.cli_parser import get_parser as build_parser
    elif argv[:3] == ["python", "-m", "greenery.cli"]:
        from greenery.cli import build_parser
    elif argv[:2] == ["python", "-m"]:
        return "" if importlib.util.find_spec(argv[2]) else f"no module {argv[2]}"
    else:
        return None
    out = io.StringIO()
    try:
        with contextlib.redirect_stderr(out), contextlib.redirect_stdout(out):
            build_parser().parse_args(argv[3 if argv[0] == "python" else 1 :])
    except SystemExit as exc:
        return f"exit {exc.code}: {out.getvalue().strip().splitlines()[-1:]}"
    return ""


def test_every_command_on_the_airflow_image_is_one_airflow_3_accepts():
    ran = {name: [(argv, problem_with(argv)) for argv in commands(svc)] for name, svc in AIRFLOW.items()}
    assert all(any(p is not None for _, p in found) for found in ran.values()), ran  # each runs something known
    problems = [f"{name}: {' '.join(argv)!r}: {p}" for name, found in ran.items() for argv, p in found if p]
    assert not problems, "\n".join(problems)
    components = sorted(a[1] for found in ran.values() for a, _ in found if a[0] == "airflow" and len(a) == 2)
    assert components == ["api-server", "dag-processor", "scheduler", "triggerer"]  # Airflow 3: no webserver
    # The check itself tells good from bad.
    assert problem_with(["airflow", "webserver"]).startswith("exit 2")
    assert problem_with(["python", "-m", "greenery.cli", "generate", "--scale", "x", "d"]).startswith("exit")
    assert problem_with(["python", "-m", "no_such_module"]) == "no module no_such_module"
    lexed = commands({"command": "bash -c 'a x && b\nc | d # e'", "healthcheck": {"test": ["CMD", "f"]}})
    assert lexed == [["f"], ["a", "x"], ["c"]]


def test_every_airflow_component_runs_through_greenery_airflow():
    """Python's cycle collector run less in each (greenery/preloaded_airflow.py), GX imported first only by the
    processes the tasks are forked from (the scheduler; the Celery workers: the test below)."""
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"):
        assert _argv(AIRFLOW[name]["command"])[:3] == PRELOADED, name


def documented_commands() -> list[tuple[str, list[str]]]:
    """(where, argv) of each `airflow` and `greenery` command the README's bash blocks and the DAG's notes tell
    people to run. Placeholders are resolved as a reader would: ``[...]`` left out, ``a|b`` each tried."""
    readme = (PROJECT_DIR / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    lines = [("README.md", line) for block in blocks for line in block.splitlines()]
    dag_notes = (PROJECT_DIR / "dags" / "greenery_daily.py").read_text()
    lines += [("dags/greenery_daily.py", m) for m in re.findall(r"`((?:airflow|greenery) [^`]+)`", dag_notes)]
    found = []
    for where, line in lines:
        words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
        if words[:1] in ([".venv/bin/greenery"], ["greenery"]):
            words = ["python", "-m", "greenery.cli", *words[1:]]
        elif words[:1] != ["airflow"]:
            continue
        for choice in itertools.product(*(word.split("|") for word in words)):
            found.append((where, list(choice)))
    return found


def test_every_airflow_and_greenery_command_the_docs_give_is_one_that_parses():
    """The README once told users to backfill with Airflow 2's `airflow dags backfill`, which Airflow 3 has no more."""
    found = documented_commands()
    assert any(argv[:2] == ["airflow", "backfill"] for _, argv in found), found  # the backfill is among them
    assert sum(argv[0] == "python" for _, argv in found) >= 8, found
    problems = [f"{where}: {' '.join(argv)!r}: {p}" for where, argv in found if (p := problem_with(argv))]
    assert not problems, "\n".join(problems)
    assert problem_with(["airflow", "dags", "backfill", "greenery_daily"]).startswith("exit 2")  # the check bites


def test_airflow_settings_are_core_options_and_the_components_meet():
    from airflow.configuration import retrieve_configuration_description

    core = retrieve_configuration_description(include_providers=False)
    # [celery] is the Celery provider's, which the stack pins (the celery profile's executor and workers).
    provided = {"celery": retrieve_configuration_description(include_providers=True)["celery"]}
    assert "apache-airflow-providers-celery==" in COMMON_ENV["_PIP_ADDITIONAL_REQUIREMENTS"]
    options = {**core, **provided}
    for name, svc in AIRFLOW.items():
        for key in svc.get("environment", {}):
            if m := re.fullmatch(r"AIRFLOW__([A-Z0-9_]+?)__([A-Z0-9_]+?)(_CMD)?", key):
                option = options.get(m[1].lower(), {}).get("options", {}).get(m[2].lower())
                assert option is not None, f"{name}: {key} is unknown"
                assert not m[3] or option.get("sensitive"), (
                    f"{name}: {key}: Airflow runs _CMD for sensitive options only"
                )
    assert not COMMON_ENV["AIRFLOW__CORE__AUTH_MANAGER"].startswith("airflow.providers.")  # no provider needed
    api = urlsplit(COMMON_ENV["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert airflow_command(SERVICES[api.hostname]) == ["api-server"] and api.port == 8080
    assert_is_a_postgres_service(COMMON_ENV["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])


def test_the_stack_has_the_settings_and_start_order_the_readme_states(tmp_path):
    """README: compose sets greenery ui's heartbeat interval and idle sleep; its queued-task timeout is 180 s
    unless .env says otherwise; the api-server's health check is the Execution API's ``/execution/health``,
    which the scheduler and the Celery workers wait for."""
    from greenery.dev import local_ui

    ours = local_ui.airflow_env(tmp_path, 8080, base={})
    for key in ("AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL", "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME"):
        assert COMMON_ENV.get(key) == ours[key], key
    assert interpolate(RAW, {})["x-airflow-common"]["environment"]["AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT"] == "180"
    [api] = [name for name, svc in AIRFLOW.items() if airflow_command(svc) == ["api-server"]]
    assert "/execution/health" in " ".join(SERVICES[api]["healthcheck"]["test"])
    waiting = {
        name for name, svc in AIRFLOW.items() if svc.get("depends_on", {}).get(api) == {"condition": "service_healthy"}
    }
    assert {"airflow-scheduler", "airflow-worker-1", "airflow-worker-2"} <= waiting, waiting


def assert_is_a_postgres_service(url: str) -> None:
    """The URL logs into a postgres service of the stack with the user, password and database it creates."""
    parts, pg = urlsplit(url), SERVICES[urlsplit(url).hostname]["environment"]
    created = (pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"])
    assert (parts.username, parts.password, parts.path[1:]) == created, url


def test_settings_and_connections_are_the_ones_the_package_reads():
    from greenery import config, links, warehouse
    from greenery.alerts.delivery import WEBHOOK_CONN_TYPE

    read = set(re.findall(r'"(GREENERY_\w+)"', Path(config.__file__).read_text()))  # it alone reads them
    for name, svc in AIRFLOW.items():
        if "environment" not in svc:
            continue  # a service without an environment runs no project code
        env = {k: str(v) for k, v in svc["environment"].items()}
        settings = config.get(env)  # the values parse, too
        unread = {k for k in env if k.startswith("GREENERY_")} - read
        assert not unread, f"{name}: include/greenery/config.py never reads {unread}"
        used = {settings.warehouse_conn_id, settings.alert_conn_id, settings.summary_conn_id} - {None}
        assert used == {"greenery_warehouse", "slack_alerts"}, f"{name}: the code would use the connections {used}"
        provided = {k for k in env if k.startswith("AIRFLOW_CONN_")}
        assert provided == {warehouse.conn_env_var(c) for c in used}, f"{name}: provides {provided}, uses {used}"
    settings, warehouse_url = config.get(COMMON_ENV), COMMON_ENV["AIRFLOW_CONN_GREENERY_WAREHOUSE"]
    assert_is_a_postgres_service(warehouse_url)
    # The warehouse compares text byte by byte, as warehouse.NEW_DATABASE makes the tests' (README: Operations).
    initdb = SERVICES[urlsplit(warehouse_url).hostname]["environment"]["POSTGRES_INITDB_ARGS"].split()
    assert {"--locale=C", "--encoding=UTF8"} <= set(initdb), initdb
    assert settings.asset_uri_prefix == f"postgres://{warehouse_url.split('@')[1]}/marts"  # names that database
    assert json.loads(COMMON_ENV["AIRFLOW_CONN_SLACK_ALERTS"])["conn_type"] == WEBHOOK_CONN_TYPE
    # The Data Docs hold raw data values that GX writes unescaped (stored XSS, and data for anyone who can reach
    # a port): only the api-server serves them, through the plugin's sandboxed route behind the Airflow login,
    # from the warehouse (greenery_audit.data_docs). No volume holds them, so no other server can serve them.
    assert not any("gx" in v.lower() for v in COMPOSE["volumes"]), COMPOSE["volumes"]
    # Review: a fixed http://localhost:8080 here sent the Data Docs buttons elsewhere than the other links of a
    # deployment with its own [api] base_url. Unset (empty in .env), they start at that base URL too.
    assert settings.data_docs_base_url is None, settings.data_docs_base_url
    with mock.patch.object(links, "base_url", return_value="https://airflow.corp.example"):
        assert links.docs_url() == "https://airflow.corp.example/data-quality/docs/"  # the plugin's route


def test_every_component_links_from_the_base_url_set_in_dotenv(monkeypatch):
    """Review: the compose file set no [api] base_url, so every link of an alert sent by a stack on a shared server
    started at Airflow's own fallback, http://localhost:8080: dead on on-call's machine, and .env had no setting to
    change it. It is AIRFLOW_BASE_URL now, passed to every Airflow component (tasks build the links, the api-server
    serves the view), by default where the api-server is published on this machine."""
    from airflow.configuration import conf

    from greenery import links

    [api] = [svc for svc in AIRFLOW.values() if airflow_command(svc) == ["api-server"]]
    [published] = [p.split(":")[-2] for p in api["ports"] if p.split(":")[-1] == "8080"]
    for given, expected in ((None, f"http://localhost:{published}"), ("https://airflow.example",) * 2):
        env = {**env_example()[0], **({"AIRFLOW_BASE_URL": given} if given else {})}
        services = interpolate(RAW, env)["services"]
        urls = {name: services[name]["environment"].get("AIRFLOW__API__BASE_URL") for name in AIRFLOW}
        assert set(urls.values()) == {expected}, urls
    with monkeypatch.context() as patched:
        patched.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example")
        assert conf.get("api", "base_url") == "https://airflow.example"
        assert links.run_url("manual__1").startswith("https://airflow.example/dags/")


def test_airflows_shared_secrets_are_made_at_the_first_start_and_the_ui_is_published_on_this_machine(tmp_path):
    """Review: the JWT secret defaulted to "change-me" (written in this file and in .env.example) on a port published
    to every interface: anyone could sign an admin token. airflow-init writes the secrets (the .env values, else
    random), every component reads the same file, and the UI's port is this machine's unless .env widens it."""
    from greenery.dev import compose_secrets

    services = interpolate(RAW, env_example()[0])["services"]
    init = services["airflow-init"]
    assert "python -m greenery.dev.compose_secrets /opt/airflow/config" in init["command"][-1]
    assert init["command"][-1].index("compose_secrets") < init["command"][-1].index("airflow db migrate")
    options = {"jwt_secret": "AIRFLOW__API_AUTH__JWT_SECRET", "secret_key": "AIRFLOW__API__SECRET_KEY"}
    assert set(options) == set(compose_secrets.SECRETS)
    for name in AIRFLOW:
        env = services[name]["environment"]
        for file, option in options.items():
            assert env[f"{option}_CMD"] == f"cat /opt/airflow/config/{file}" and option not in env, (name, option)
    assert {v for k, v in env_example()[0].items() if k in compose_secrets.SECRETS.values()} == {""}
    made = compose_secrets.write(tmp_path, {"AIRFLOW_JWT_SECRET": "", "AIRFLOW_SECRET_KEY": ""})
    first = {name: (tmp_path / name).read_text() for name in compose_secrets.SECRETS}
    assert len(made) == 2 and all(len(secret) >= 40 for secret in first.values()), first
    assert all((tmp_path / name).stat().st_mode & 0o777 == 0o600 for name in first)
    assert compose_secrets.write(tmp_path, {}) == []  # the next start keeps them: tokens given out stay valid
    assert {name: (tmp_path / name).read_text() for name in first} == first
    # Diff review: an empty file (an init stopped mid-write) was kept for good, and each component made its own key.
    (tmp_path / "secret_key").write_text("")
    assert compose_secrets.write(tmp_path, {}) == ["secret_key (made at random, the kept one being short)"]
    assert (
        len((tmp_path / "secret_key").read_text()) >= 40 and (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
    )
    assert (tmp_path / "jwt_secret").read_text() == first["jwt_secret"] and not list(tmp_path.glob(".*.new"))
    given = "x" * compose_secrets.SHORTEST
    compose_secrets.write(tmp_path, {"AIRFLOW_JWT_SECRET": given})
    assert (tmp_path / "jwt_secret").read_text() == given
    # An .env copied from the old .env.example keeps its known value (diff review): refused, nothing written.
    for weak in ("change-me", "short"):
        with pytest.raises(compose_secrets.WeakSecretError, match=r"AIRFLOW_JWT_SECRET in \.env is"):
            compose_secrets.write(tmp_path, {"AIRFLOW_JWT_SECRET": weak})
        assert (tmp_path / "jwt_secret").read_text() == given
    [published] = [p for p in services["airflow-apiserver"]["ports"] if p.endswith(":8080")]
    assert published == "127.0.0.1:8080:8080"
    widened = interpolate(RAW, {**env_example()[0], "AIRFLOW_PUBLISH_ADDRESS": "192.0.2.7"})["services"]
    assert "192.0.2.7:8080:8080" in widened["airflow-apiserver"]["ports"]


def test_mounted_project_paths_are_in_the_repo_and_where_airflow_looks():
    mounts = dict(reversed(v.split(":")[:2]) for v in COMPOSE["x-airflow-common"]["volumes"] if v.startswith("./"))
    assert mounts["/opt/airflow/dags"] == "./dags" and (PROJECT_DIR / "dags" / "greenery_daily.py").is_file()
    assert (PROJECT_DIR / mounts[COMMON_ENV["PYTHONPATH"]] / "greenery" / "__init__.py").is_file()
    for name, svc in SERVICES.items():
        for source in (v.split(":")[0] for v in svc.get("volumes", []) if v.startswith((".", "/", "~"))):
            host = (PROJECT_DIR / source).resolve()
            assert host.exists() and host.is_relative_to(PROJECT_DIR), f"{name}: mounts {source}: not in the repo"
            assert git("ls-files", "--", source).stdout.strip(), f"{name}: {source} holds no tracked file"
    assert git("ls-files", "--", "tests/data/compose-spec.json").stdout.strip(), "the schema is not tracked"


def test_the_image_and_extra_requirements_pin_the_lock():
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.utils import canonicalize_name as norm

    locked = re.findall(r"^([\w.-]+)==(\S+)", (PROJECT_DIR / "requirements.lock").read_text(), re.M)
    lock = {norm(name): version for name, version in locked}
    project = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())["project"]
    extras = COMMON_ENV["_PIP_ADDITIONAL_REQUIREMENTS"]
    for name, svc in AIRFLOW.items():
        airflow, python = AIRFLOW_IMAGE.match(svc["image"]).groups()
        assert airflow == lock["apache-airflow"], f"{name}: {svc['image']} vs lock {lock['apache-airflow']}"
        assert SpecifierSet(project["requires-python"]).contains(python), f"{name}: {svc['image']}"
        assert svc.get("environment", {}).get("_PIP_ADDITIONAL_REQUIREMENTS") in (None, "", extras), name
    pins = [Requirement(r) for r in extras.split()]
    for req in pins:
        [spec] = req.specifier
        assert spec.operator == "==" and lock.get(norm(req.name)) == spec.version, f"{req} vs the lock"
    runtime = {norm(Requirement(d).name) for d in project["dependencies"]}
    missing = runtime - {norm(r.name) for r in pins} - NOT_PIP_INSTALLED
    assert not missing, f"runtime dependencies neither in the image nor in _PIP_ADDITIONAL_REQUIREMENTS: {missing}"


def test_dotenv_is_git_ignored_and_env_example_names_every_variable():
    assert git("check-ignore", "-q", "--no-index", ".env").returncode == 0, ".env is not git-ignored"
    assert git("check-ignore", "-q", "--no-index", ".env.example").returncode == 1, ".env.example is ignored"
    used, names = {m[1] for m in _VAR.finditer(json.dumps(RAW)) if m[1]}, env_example()[1]
    names -= {"COMPOSE_PROFILES"}  # compose's own setting (which profiles run), read from .env by compose
    assert used and used == names, f"only in compose: {sorted(used - names)}; only in .env.example: {names - used}"
    assert interpolate(["$$A ${B} ${C:-c} ${D:-}"], {"B": "b", "C": ""}) == ["$A b c "]
    with pytest.raises(AssertionError, match="does not know"):
        interpolate("${E:?required}", {})


# ---------------------------------------------------------------------------------------------------
# The celery profile: the official file's Redis broker and Celery workers, the LocalExecutor by default
# ---------------------------------------------------------------------------------------------------

CELERY_VALUES = {**env_example()[0], "AIRFLOW_EXECUTOR": "CeleryExecutor"}
CELERY = interpolate(RAW, CELERY_VALUES)["services"]


def in_profiles(svc: dict) -> set[str]:
    return set(svc.get("profiles", []))


def test_the_default_stack_runs_the_local_executor_without_any_profile_service():
    default = {name for name, svc in SERVICES.items() if not in_profiles(svc)}
    assert COMMON_ENV["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert {"redis", "airflow-worker-1", "airflow-worker-2", "flower"}.isdisjoint(default)
    for name in default:  # `docker compose up` without a profile starts nothing it waits for in vain
        assert set(SERVICES[name].get("depends_on", {})) <= default, name
    # .env.example names both settings the profile needs (compose starts the services, Airflow uses them)
    values, names = env_example()
    assert {"COMPOSE_PROFILES", "AIRFLOW_EXECUTOR"} <= names and "AIRFLOW_EXECUTOR" not in values
    assert re.search(r"^# COMPOSE_PROFILES=celery\b", (PROJECT_DIR / ".env.example").read_text(), re.M)


def test_the_celery_profile_has_a_broker_and_two_workers_that_share_no_file():
    preloaded = [*PRELOADED, "celery", "worker"]  # `airflow celery worker`, GX first
    workers = {name: svc for name, svc in CELERY.items() if svc.get("command") == preloaded}
    assert sorted(workers) == ["airflow-worker-1", "airflow-worker-2"]
    assert in_profiles(CELERY["redis"]) == {"celery"} and CELERY["redis"]["image"].startswith("redis:")
    assert "ports" not in CELERY["redis"], "the broker has no password: it stays inside the stack"
    env = CELERY["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    broker = urlsplit(env["AIRFLOW__CELERY__BROKER_URL"])
    assert broker.scheme == "redis" and broker.hostname == "redis" and broker.port in CELERY["redis"]["expose"]
    assert_is_a_postgres_service(env["AIRFLOW__CELERY__RESULT_BACKEND"].removeprefix("db+"))
    hostnames = {svc["hostname"] for svc in workers.values()}
    assert hostnames == set(workers), "each worker its own host name, recorded on the task instances it runs"
    for name, svc in workers.items():
        assert in_profiles(svc) == {"celery"}, name
        assert svc["image"] == COMPOSE["x-airflow-common"]["image"], name
        assert {k: v for k, v in svc["environment"].items() if k != "DUMB_INIT_SETSID"} == env, name
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy", name
        # The project's code, the logs and the auth file, as every Airflow container: no volume for results.
        assert svc["volumes"] == COMPOSE["x-airflow-common"]["volumes"], name
        assert [problem_with(argv) for argv in commands(svc)[:2]] == ["", ""], name  # the module; airflow's parser
        ping = RAW["services"][name]["healthcheck"]["test"][1]  # as written: $$ is a literal $ for the shell
        assert "celery_executor.app inspect ping" in ping and '-d "celery@$${HOSTNAME}"' in ping, name


def test_flower_is_optional_local_and_behind_a_password():
    flower = CELERY["flower"]
    assert in_profiles(flower) == {"flower"} and flower["command"] == "celery flower"
    assert problem_with(["airflow", "celery", "flower"]) == ""
    assert all(str(p).startswith("127.0.0.1:") for p in flower["ports"]), flower["ports"]
    user, _, password = flower["environment"]["AIRFLOW__CELERY__FLOWER_BASIC_AUTH"].partition(":")
    assert user and password, "Flower shows the queued workloads: never without a login"
    published = {name for name, svc in CELERY.items() if svc.get("ports")}
    assert published == {"airflow-apiserver", "warehouse", "flower"}, published
    # Operator trial: the warehouse, whose login is the fixed greenery/greenery, was published on every interface.
    assert all(str(p).startswith("127.0.0.1:") for p in CELERY["warehouse"]["ports"]), CELERY["warehouse"]["ports"]
