"""docker-compose.yaml, checked without a Docker engine.

- It parses and validates against the Compose Specification's JSON schema (vendored: tests/data/README.md),
  after compose's own ``${VAR}`` interpolation with the values of .env.example.
- Every command run on the Airflow image parses with Airflow's own CLI parser (the same 3.3 as the image),
  ``python -m greenery.cli ...`` with the project's parser, ``python -c`` code compiles; the four Airflow 3
  components (api-server, scheduler, dag-processor, triggerer) are there; every ``AIRFLOW__SECTION__KEY``
  is an option of Airflow core (no provider needed).
- The ``AIRFLOW_CONN_*`` / ``GREENERY_*`` variables are the ones the package reads, and the connections the
  code uses are provided and point at the compose services.
- Mounted host paths are tracked in the repo; the package is importable (PYTHONPATH is its mount); the GX
  folder is a shared volume.
- The image pins requirements.lock's Airflow and the extra pip requirements pin the lock's versions.
- .env is git-ignored and .env.example names every variable the compose file interpolates.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import json
import re
import shlex
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

PROJECT_DIR = Path(__file__).resolve().parent.parent
COMPOSE_FILE = PROJECT_DIR / "docker-compose.yaml"
ENV_EXAMPLE = PROJECT_DIR / ".env.example"
SCHEMA_FILE = Path(__file__).resolve().parent / "data" / "compose-spec.json"
LOCK_FILE = PROJECT_DIR / "requirements.lock"
PYPROJECT = PROJECT_DIR / "pyproject.toml"
CODE_FILES = sorted(
    [
        *(PROJECT_DIR / "include" / "greenery").rglob("*.py"),
        *(PROJECT_DIR / "dags").glob("*.py"),
        *(PROJECT_DIR / "plugins").rglob("*.py"),
    ]
)

AIRFLOW_IMAGE = re.compile(r"^apache/airflow:(?P<version>\d+\.\d+\.\d+)(?:-python(?P<python>\d+\.\d+))?$")
AIRFLOW_3_COMPONENTS = {"api-server", "scheduler", "dag-processor", "triggerer"}
# Runtime dependencies of pyproject.toml that the compose stack does not pip-install, and why.
PROVIDED_BY_IMAGE = {"apache-airflow", "apache-airflow-task-sdk", "jinja2"}
LOCAL_ONLY = {"pgserver"}  # the embedded PostgreSQL of the CLI and the tests; compose has a real one

# Compose interpolation: $$ is a literal $, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, $VAR.
_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)
_SHELL_PREFIXES = {"exec", "if", "then", "else", "do", "!", "time"}


# --------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------


def env_example() -> tuple[dict[str, str], set[str]]:
    """(values set in .env.example, every name it mentions including commented-out ``# NAME=`` lines)."""
    values, names = {}, set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        if m := re.match(r"^\s*(#\s*)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line):
            names.add(m[2])
            if not m[1]:
                values[m[2]] = m[3].strip().strip("'\"")
    return values, names


def interpolate(text: str, env: dict[str, str]) -> str:
    def replace(m: re.Match) -> str:
        if m["escaped"]:
            return "$"
        name = m["braced"] or m["named"]
        value, op, arg = env.get(name), m["op"], m["arg"] or ""
        if op in (":-", "-"):
            return value if (value if op == ":-" else value is not None) else arg
        if op in (":?", "?"):
            if not (value if op == ":?" else value is not None):
                raise ValueError(f"${{{name}}} is required: {arg}")
            return value
        if op in (":+", "+"):
            return arg if (value if op == ":+" else value is not None) else ""
        return value or ""

    return _INTERPOLATION.sub(replace, text)


def interpolated(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, dict):
        return {k: interpolated(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolated(v, env) for v in node]
    return node


def interpolated_names(node: Any) -> set[str]:
    """The variables interpolated in a compose model's keys and values (comments are not interpolated)."""
    if isinstance(node, dict):
        return set().union(set(), *(interpolated_names(k) | interpolated_names(v) for k, v in node.items()))
    if isinstance(node, list):
        return set().union(set(), *(interpolated_names(v) for v in node))
    if isinstance(node, str):
        return {m["braced"] or m["named"] for m in _INTERPOLATION.finditer(node) if not m["escaped"]}
    return set()


@pytest.fixture(scope="module")
def raw_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def compose(raw_compose) -> dict:
    """The compose model as ``docker compose`` sees it with a .env copied from .env.example."""
    return interpolated(raw_compose, env_example()[0])


def airflow_services(compose: dict) -> dict[str, dict]:
    return {name: svc for name, svc in compose["services"].items() if AIRFLOW_IMAGE.match(str(svc.get("image", "")))}


def environment(svc: dict) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def lock_versions() -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)", LOCK_FILE.read_text(), flags=re.M)
    return {normalize(name): version for name, version in pins}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def git(*args: str) -> subprocess.CompletedProcess | None:
    try:
        done = subprocess.run(["git", "-C", str(PROJECT_DIR), *args], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        return None
    return done


def in_git_work_tree() -> bool:
    done = git("rev-parse", "--is-inside-work-tree")
    return done is not None and done.returncode == 0 and done.stdout.strip() == "true"


# Commands -------------------------------------------------------------------------------------------------


def shell_commands(script: str) -> list[list[str]]:
    """The simple commands of a shell script (enough for the scripts in compose files: no heredocs)."""
    lexer = shlex.shlex(script.replace("\\\n", " "), posix=True, punctuation_chars="();<>|&\n")
    lexer.whitespace = " \t\r"  # newlines separate commands (quoted ones stay inside their word)
    lexer.whitespace_split = True
    lexer.commenters = ""  # '#' starts a comment only at the start of a word: handled below
    commands: list[list[str]] = [[]]
    comment = False
    for token in lexer:
        if not token.strip("();<>|&\n"):  # operators, redirections, newlines: the command ends
            commands.append([])
            comment = False
        elif comment or token.startswith("#"):
            comment = True
        elif commands[-1] or token not in _SHELL_PREFIXES:
            commands[-1].append(token)
    return [c for c in commands if c]


def argv_of(command: Any) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def invocations(svc: dict) -> list[list[str]]:
    """What a service on the Airflow image runs: its command (through the image's entrypoint) and health checks."""
    found = []
    if "entrypoint" in svc:
        argv = argv_of(svc["entrypoint"]) + argv_of(svc.get("command") or [])
    else:
        argv = argv_of(svc.get("command") or [])
        # The image's entrypoint runs `bash`/`python` commands as they are and anything else as `airflow ...`.
        if argv and argv[0] not in ("bash", "python", "airflow"):
            argv = ["airflow", *argv]
    found += shell_commands(argv[2]) if argv[:2] in (["bash", "-c"], ["sh", "-c"]) else [argv] if argv else []
    test = (svc.get("healthcheck") or {}).get("test")
    if isinstance(test, str):
        found += shell_commands(test)
    elif test and test[0] == "CMD-SHELL":
        found += shell_commands(test[1])
    elif test and test[0] == "CMD":
        found.append(test[1:])
    return found


def check_invocation(argv: list[str]) -> str | None:
    """None when argv is not an Airflow/Python command; else "" when it is valid, or what is wrong."""
    if argv[0] == "airflow":
        from airflow.cli.cli_parser import get_parser

        return _parses(get_parser(), argv[1:])
    if argv[0] in ("python", "python3"):
        if argv[1:3] == ["-m", "greenery.cli"]:
            from greenery.cli import build_parser

            return _parses(build_parser(), argv[3:])
        if argv[1] == "-m":
            return "" if importlib.util.find_spec(argv[2]) else f"no module {argv[2]}"
        if argv[1] == "-c":
            try:
                compile(argv[2], "<compose python -c>", "exec")
            except SyntaxError as exc:
                return f"python -c does not compile: {exc}"
            return ""
        return f"unexpected python invocation {argv}"
    return None


def _parses(parser, args: list[str]) -> str:
    out = io.StringIO()
    try:
        with contextlib.redirect_stderr(out), contextlib.redirect_stdout(out):
            parser.parse_args(args)
    except SystemExit as exc:
        return f"exit {exc.code}: {out.getvalue().strip().splitlines()[-1:]}"
    return ""


# Code -----------------------------------------------------------------------------------------------------

_ENV_READ = re.compile(
    r"""(?:os\.(?:environ\.get|getenv)\(|\benv\.get\(|_(?:text|number|date)\(env,)\s*["'](?P<name>[A-Z][A-Z0-9_]*)["']\s*(?:,\s*["'](?P<default>[^"']*)["'])?"""
    r"""|os\.environ\[\s*["'](?P<name2>[A-Z][A-Z0-9_]*)["']\s*\]"""
)


def code_env_reads() -> dict[str, str | None]:
    """Environment variables the package, DAG and plugins read by literal name -> literal default (or None)."""
    reads: dict[str, str | None] = {}
    for path in CODE_FILES:
        for m in _ENV_READ.finditer(path.read_text()):
            name = m["name"] or m["name2"]
            reads[name] = reads.get(name) or m["default"]
    return reads


# --------------------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------------------


def compose_validator():
    import jsonschema

    assert SCHEMA_FILE.is_file(), (
        f"{SCHEMA_FILE} is missing (git-ignored by a `data/` pattern? see tests/data/README.md)"
    )
    schema = json.loads(SCHEMA_FILE.read_text())
    # The schema says "$schema": "https://json-schema.org/draft-07/schema", a spelling jsonschema does not map.
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_compose_file_validates_against_the_compose_spec(raw_compose, compose):
    validator = compose_validator()
    for label, model in (("as written", raw_compose), ("after interpolation", compose)):
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(model)]
        assert not errors, f"{COMPOSE_FILE.name} {label}:\n" + "\n".join(errors)
    assert {"postgres", "warehouse", "airflow-init", "airflow-apiserver"} <= set(compose["services"])


def test_the_vendored_schema_is_in_the_repo():
    """A fresh clone (CI) must have it: tracked, or at least not git-ignored so that `git add` takes it."""
    if not in_git_work_tree():
        pytest.skip("not a git checkout")
    for path in (SCHEMA_FILE, SCHEMA_FILE.parent / "README.md"):
        relative = str(path.relative_to(PROJECT_DIR))
        tracked = bool(git("ls-files", "--", relative).stdout.strip())
        ignored = git("check-ignore", "-q", relative).returncode == 0
        assert tracked or not ignored, (
            f"{relative} is git-ignored ({git('check-ignore', '-v', relative).stdout.strip()}): anchor the"
            " pattern (`/data/`) or `git add -f` it"
        )


def test_the_vendored_schema_catches_mistakes(compose):
    validator = compose_validator()
    broken = json.loads(json.dumps(compose))
    broken["services"]["airflow-scheduler"]["comand"] = "scheduler"  # a typo'd key
    broken["services"]["warehouse"]["ports"] = "5433:5432"  # a string where a list is required
    broken["services"]["airflow-init"]["depends_on"]["postgres"]["condition"] = "service_done"
    messages = " | ".join(e.message for e in validator.iter_errors(broken))
    assert "comand" in messages and "'5433:5432' is not of type 'array'" in messages
    assert "service_done" in messages


def test_volumes_and_dependencies_refer_to_what_is_declared(compose):
    declared_volumes = set(compose.get("volumes") or {})
    services = compose["services"]
    for name, svc in services.items():
        for volume in svc.get("volumes") or []:
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source and not source.startswith((".", "/", "~")):
                assert source in declared_volumes, f"{name}: named volume {source!r} is not declared"
        depends_on = svc.get("depends_on") or {}
        for other, spec in depends_on.items() if isinstance(depends_on, dict) else ((d, {}) for d in depends_on):
            assert other in services, f"{name} depends on an unknown service {other!r}"
            if spec.get("condition") == "service_completed_successfully":
                assert services[other].get("restart") == "no", f"{other} is awaited to finish: restart must be 'no'"


# --------------------------------------------------------------------------------------------------------
# Airflow: commands, components, settings
# --------------------------------------------------------------------------------------------------------


def test_every_command_on_the_airflow_image_is_one_airflow_3_accepts(compose):
    services = airflow_services(compose)
    assert services, "no service runs the apache/airflow image"
    problems, components = [], []
    for name, svc in services.items():
        checked = 0
        for argv in invocations(svc):
            problem = check_invocation(argv)
            if problem is None:
                continue
            checked += 1
            if problem:
                problems.append(f"{name}: {' '.join(argv)!r}: {problem}")
            if argv[0] == "airflow" and len(argv) == 2:
                components.append(argv[1])
        assert checked, f"{name}: runs nothing recognisable as an Airflow or Python command"
    assert not problems, "\n".join(problems)
    # One of each Airflow 3 component: no `webserver` (gone in 3.x), no separate worker (LocalExecutor).
    assert sorted(components) == sorted(AIRFLOW_3_COMPONENTS), components


def test_the_compose_commands_are_really_checked():
    assert check_invocation(["airflow", "webserver"]).startswith("exit 2")
    assert check_invocation(["airflow", "users", "create"]).startswith("exit 2")  # FAB only
    assert check_invocation(["airflow", "dag-processor"]) == ""
    assert check_invocation(["python", "-m", "greenery.cli", "generate", "--scale", "x", "d"]).startswith("exit")
    assert check_invocation(["python", "-c", "import sys;("]).startswith("python -c does not compile")
    assert check_invocation(["python", "-m", "no_such_module_here"]) == "no module no_such_module_here"
    assert check_invocation(["chown", "-R", "x", "/y"]) is None
    assert shell_commands('set -e\nfoo "a b\nc" && exec airflow db migrate # note\n\nx; y | z \\\n  --w') == [
        ["set", "-e"],
        ["foo", "a b\nc"],
        ["airflow", "db", "migrate"],
        ["x"],
        ["y"],
        ["z", "--w"],
    ]


def test_airflow_settings_are_airflow_core_options(compose):
    from airflow.configuration import retrieve_configuration_description

    options = retrieve_configuration_description(include_providers=False)
    services = airflow_services(compose)
    for name, svc in services.items():
        for key in environment(svc):
            if m := re.fullmatch(r"AIRFLOW__([A-Z0-9_]+?)__([A-Z0-9_]+)", key):
                section, option = m[1].lower(), m[2].lower()
                assert option in (options.get(section) or {}).get("options", {}), f"{name}: {key} is no core option"

    env = environment(services["airflow-scheduler"])
    # An auth manager that Airflow core ships: the image needs no provider for it.
    auth_manager = env["AIRFLOW__CORE__AUTH_MANAGER"]
    assert not auth_manager.startswith("airflow.providers."), auth_manager
    module, _, cls = auth_manager.rpartition(".")
    assert getattr(importlib.import_module(module), cls)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    # Tasks reach the Execution API on the api-server service.
    url = re.fullmatch(r"http://([a-z0-9-]+):(\d+)/execution/", env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert url, env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]
    assert argv_of(compose["services"][url[1]]["command"]) == ["api-server"] and url[2] == "8080"
    # Every component shares the secrets (else tasks cannot authenticate to the Execution API).
    for key in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY"):
        assert len({environment(svc).get(key) for svc in services.values() if "command" in svc}) == 1, key
    # The metadata database is the postgres service.
    db = re.fullmatch(
        r"postgresql\+psycopg2://(\w+):(\w+)@([a-z0-9-]+)/(\w+)", env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    )
    pg = environment(compose["services"][db[3]])
    assert (db[1], db[2], db[4]) == (pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"])


# --------------------------------------------------------------------------------------------------------
# The package's environment variables and connections
# --------------------------------------------------------------------------------------------------------


def test_env_vars_and_connections_match_what_the_code_reads(compose):
    from airflow.models.connection import Connection

    from greenery import warehouse

    reads = code_env_reads()
    conn_id_vars = {name: default for name, default in reads.items() if name.endswith("_CONN_ID")}
    assert {"GREENERY_WAREHOUSE_CONN_ID", "GREENERY_ALERT_CONN_ID"} <= set(conn_id_vars), sorted(reads)

    for name, svc in airflow_services(compose).items():
        env = environment(svc)
        if not env:
            continue  # a service without an environment runs no project code
        unread = sorted(k for k in env if k.startswith("GREENERY_") and k not in reads)
        assert not unread, f"{name}: the code never reads {unread}"
        # The connections the code uses: the *_CONN_ID variables' values here, else their defaults.
        used = {env.get(var) or default for var, default in conn_id_vars.items()} - {None, ""}
        assert {"greenery_warehouse", "slack_alerts"} <= used
        provided = {k for k in env if k.startswith("AIRFLOW_CONN_")}
        unused = sorted(provided - {warehouse.conn_env_var(c) for c in used})
        assert not unused, f"{name}: no code uses the connections {unused}"
        missing = sorted({warehouse.conn_env_var(c) for c in used} - provided)
        assert not missing, f"{name}: the code uses connections that are not provided: {missing}"

    env = environment(compose["services"]["airflow-scheduler"])
    wh = Connection(conn_id="greenery_warehouse", uri=env["AIRFLOW_CONN_GREENERY_WAREHOUSE"])
    assert wh.conn_type == "postgres" and wh.host in compose["services"]
    pg = environment(compose["services"][wh.host])
    assert (wh.login, wh.password, wh.schema) == (pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"])
    # Asset URIs name the warehouse as the code's defaults (or compose's overrides) say.
    authority = env.get("GREENERY_ASSET_AUTHORITY") or reads["GREENERY_ASSET_AUTHORITY"]
    database = env.get("GREENERY_ASSET_DATABASE") or reads["GREENERY_ASSET_DATABASE"]
    assert (authority, database) == (f"{wh.host}:{wh.port}", wh.schema)

    from greenery.alerts.delivery import WEBHOOK_CONN_TYPE

    slack = Connection.from_json(env["AIRFLOW_CONN_SLACK_ALERTS"], conn_id="slack_alerts")
    assert slack.conn_type == WEBHOOK_CONN_TYPE


# --------------------------------------------------------------------------------------------------------
# Mounts
# --------------------------------------------------------------------------------------------------------


def bind_mounts(svc: dict) -> dict[str, Path]:
    """Container path -> host path of a service's bind mounts."""
    mounts = {}
    for volume in svc.get("volumes") or []:
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        elif volume.get("type") == "bind":
            source, target = volume["source"], volume["target"]
        else:
            continue
        if source.startswith((".", "/", "~")):
            mounts[target] = (COMPOSE_FILE.parent / Path(source).expanduser()).resolve()
    return mounts


def named_volume_targets(svc: dict) -> dict[str, str]:
    targets = {}
    for volume in svc.get("volumes") or []:
        source, target = (
            (volume.split(":")[:2]) if isinstance(volume, str) else (volume.get("source"), volume["target"])
        )
        if source and not source.startswith((".", "/", "~")):
            targets[target] = source
    return targets


def test_every_mounted_host_path_is_in_the_repo(compose):
    tracked_check = in_git_work_tree()
    for name, svc in compose["services"].items():
        for target, host in bind_mounts(svc).items():
            assert host.exists(), f"{name}: mounts {host} (at {target}), which does not exist"
            assert host.is_relative_to(PROJECT_DIR), f"{name}: mounts {host} from outside the repo"
            if tracked_check:  # a fresh clone has it only if git tracks something there
                listed = git("ls-files", "--", str(host.relative_to(PROJECT_DIR)))
                assert listed.stdout.strip(), f"{name}: {host.relative_to(PROJECT_DIR)} holds no tracked file"


def test_the_package_dags_and_gx_folder_are_where_airflow_looks(compose, monkeypatch):
    services = airflow_services(compose)
    gx_volumes = set()
    for name, svc in services.items():
        mounts, env = bind_mounts(svc), environment(svc)
        if "command" not in svc:
            continue
        assert mounts.get("/opt/airflow/dags") == PROJECT_DIR / "dags", f"{name}: dags not at the image's dags_folder"
        assert (mounts["/opt/airflow/dags"] / "greenery_daily.py").is_file()
        paths = [p for p in env.get("PYTHONPATH", "").split(":") if p]
        assert any((mounts.get(p, Path("/nonexistent")) / "greenery" / "__init__.py").is_file() for p in paths), (
            f"{name}: PYTHONPATH {paths} does not make the greenery package importable"
        )
        gx_dir = env.get("GREENERY_GX_DIR")
        assert gx_dir, f"{name}: GREENERY_GX_DIR is not set (GX results would stay inside one container)"
        gx_volumes.add(named_volume_targets(svc).get(gx_dir))
    assert len(gx_volumes) == 1 and None not in gx_volumes, f"GREENERY_GX_DIR is not one shared volume: {gx_volumes}"
    # The Data Docs hold raw data values that GX writes unescaped (stored XSS, and data for anyone who can
    # reach the port): only Airflow, through the plugin's sandboxed route behind its login, serves them.
    from urllib.parse import urlsplit

    from greenery.checks.paths import data_docs_index
    from greenery.tasks.validate import data_docs_url

    for name, svc in compose["services"].items():
        if svc.get("ports") and gx_volumes & set(named_volume_targets(svc).values()):
            assert argv_of(svc.get("command") or [""])[0] == "api-server", f"{name} serves the Data Docs itself"
    env = environment(compose["x-airflow-common"])
    monkeypatch.setenv("GREENERY_DATA_DOCS_BASE_URL", env["GREENERY_DATA_DOCS_BASE_URL"])
    url = urlsplit(data_docs_url(str(data_docs_index(Path(env["GREENERY_GX_DIR"])))))  # as an alert links it
    assert url.path == "/data-quality/docs/index.html", url.geturl()  # plugins/greenery_quality_plugin.py
    [api] = [s for s in compose["services"].values() if argv_of(s.get("command") or [""])[0] == "api-server"]
    published = {str(p).split(":")[0]: str(p).split(":")[1] for p in api.get("ports", [])}
    assert published.get(str(url.port)) == "8080", f"{url.geturl()}: port {url.port} is not the api-server's"


# --------------------------------------------------------------------------------------------------------
# Versions
# --------------------------------------------------------------------------------------------------------


def test_the_image_and_extra_requirements_pin_the_lock(compose):
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet

    lock = lock_versions()
    pyproject = tomllib.loads(PYPROJECT.read_text())["project"]
    for name, svc in airflow_services(compose).items():
        image = AIRFLOW_IMAGE.match(svc["image"])
        assert image["version"] == lock["apache-airflow"], f"{name}: {svc['image']} vs lock {lock['apache-airflow']}"
        assert image["python"] and SpecifierSet(pyproject["requires-python"]).contains(image["python"]), svc["image"]

    env = environment(compose["x-airflow-common"])
    requirements = [Requirement(r) for r in env["_PIP_ADDITIONAL_REQUIREMENTS"].split()]
    assert requirements
    for req in requirements:
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{req} is not pinned with =="
        assert lock.get(normalize(req.name)) == specs[0].version, f"{req} vs lock {lock.get(normalize(req.name))}"
        for extra in req.extras:  # psycopg[binary] -> psycopg-binary
            if (extra_pkg := f"{normalize(req.name)}-{extra}") in lock:
                assert lock[extra_pkg] == specs[0].version, f"{req} vs lock {extra_pkg}=={lock[extra_pkg]}"
    named = {normalize(r.name) for r in requirements}
    runtime = {normalize(Requirement(d).name) for d in pyproject["dependencies"]}
    missing = sorted(runtime - named - PROVIDED_BY_IMAGE - LOCAL_ONLY)
    assert not missing, f"runtime dependencies neither in the image nor in _PIP_ADDITIONAL_REQUIREMENTS: {missing}"
    for name, svc in compose["services"].items():  # a service may only switch the extras off
        value = environment(svc).get("_PIP_ADDITIONAL_REQUIREMENTS")
        assert value in (None, "", env["_PIP_ADDITIONAL_REQUIREMENTS"]), name


# --------------------------------------------------------------------------------------------------------
# .env
# --------------------------------------------------------------------------------------------------------


def test_dotenv_is_git_ignored_and_env_example_names_every_variable(raw_compose):
    if in_git_work_tree():
        assert git("check-ignore", "-q", "--no-index", ".env").returncode == 0, ".env is not git-ignored"
        assert git("check-ignore", "-q", "--no-index", ".env.example").returncode == 1, ".env.example is ignored"
        assert not git("ls-files", "--", ".env").stdout.strip(), ".env is committed"
    else:
        patterns = {line.strip() for line in (PROJECT_DIR / ".gitignore").read_text().splitlines()}
        assert patterns & {".env", "/.env", "*.env"}, ".env is not in .gitignore"

    used = interpolated_names(raw_compose)
    values, names = env_example()
    assert used, "the compose file interpolates nothing?"
    assert not sorted(used - names), f".env.example does not name {sorted(used - names)}"
    assert not sorted(names - used), f".env.example names variables compose never uses: {sorted(names - used)}"
    # With .env.example's values nothing is left to a required-variable error.
    interpolated(raw_compose, values)


def test_interpolation_follows_compose_rules():
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("$$HOME ${SET} $SET ${NOPE:-d} ${EMPTY:-d} ${EMPTY-d} ${SET:+y}", env) == "$HOME x x d d  y"
    assert interpolated_names({"k": ["$${ESCAPED} ${A:-1}", {"$B": 1}]}) == {"A", "B"}
    with pytest.raises(ValueError, match="NEEDED"):
        interpolate("${NEEDED:?set it}", env)
