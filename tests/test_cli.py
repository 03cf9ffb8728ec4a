"""The `greenery` command as a user runs it: a subprocess per command, against a test database."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import types
from pathlib import Path

import psycopg
import pytest
from helpers import repeated_expectations

from greenery import config, run_outcome
from greenery.cli_types import UsageError
from greenery.project import models

pytestmark = pytest.mark.db


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "greenery.cli", *args]


def greenery(*args: str, env: dict, stdin: str | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        command(*args),
        capture_output=True,
        text=True,
        env=env,
        input=stdin,
        timeout=timeout,
    )


@pytest.fixture
def cli_env(published_url, tmp_path, new_airflow_home) -> dict:
    """The warehouse connection of the test database (set by published_url) and a private state folder."""
    home = new_airflow_home(tmp_path / "airflow")
    return {**os.environ, "AIRFLOW_HOME": str(home), "GREENERY_STATE_DIR": str(tmp_path / "state")}


def test_date_options_explain_themselves():
    done = subprocess.run(command("--help"), capture_output=True, text=True)
    assert "greenery: generate data" in done.stdout and "``" not in done.stdout, done.stdout  # no reST on a terminal
    done = subprocess.run(command("run", "--help"), capture_output=True, text=True)
    assert "the UTC day to build" in done.stdout and "--end-date YYYY-MM-DD" in done.stdout
    assert "run the greenery_daily DAG" in done.stdout and "  130  Ctrl-C; 143 SIGTERM" in done.stdout, done.stdout
    done = subprocess.run(command("answers", "--help"), capture_output=True, text=True)
    assert "as of the end of this day" in done.stdout
    done = subprocess.run(
        command("run", "--date", "2021-02-10", "--end-date", "2021-13-01"), capture_output=True, text=True
    )
    assert done.returncode == 2 and not done.stdout
    said = "argument --end-date: '2021-13-01' is not a day: expected a date YYYY-MM-DD: month must be in 1..12"
    assert said in done.stderr


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("generate", "OUT", "--scale", "-1"), "argument --scale: must be a number above 0, at most 10000, got -1"),
        (("generate", "OUT", "--scale", "nan"), "argument --scale: must be a number above 0, at most 10000, got nan"),
        # Review: 1e300 generated for ever; 10**8 days and the last day a date holds raised OverflowError.
        (("generate", "OUT", "--scale", "1e300"), "--scale: must be a number above 0, at most 10000, got 1e300"),
        (("generate", "OUT", "--scale", "x"), "argument --scale: 'x' is not a number"),
        (("generate", "OUT", "--days", "0"), "argument --days: must be from 1 to 36525 (a century), got 0"),
        (("generate", "OUT", "--days", "100000000"), "--days: must be from 1 to 36525 (a century), got 100000000"),
        (("generate", "OUT", "--days", "1.5"), "argument --days: '1.5' is not a whole number"),
        (("run", "--date", "9999-12-31"), "argument --date: must be a day before 9999-12-31, got 9999-12-31"),
        (("run", "--date", "2021-02-12", "--end-date", "9999-12-31"), "--end-date: must be a day before 9999-12-31"),
        (("answers", "--date", "9999-12-31"), "argument --date: must be a day before 9999-12-31, got 9999-12-31"),
        # Review: Python's date parser took these as 2021-02-11: a typo would run a day the user did not write.
        (("run", "--date", "20210211"), "argument --date: '20210211' is not a day: expected a date written YYYY-MM-DD"),
        (
            ("answers", "--date", "2021-W06-4"),
            "argument --date: '2021-W06-4' is not a day: expected a date written YYYY-MM-DD",
        ),
        (("demo", "--scale", "0"), "argument --scale: must be a number above 0, at most 10000, got 0"),
        (("ui", "--port", "99999"), "argument --port: must be a port from 1 to 65535, got 99999"),
        (("ui", "--port", "0"), "argument --port: must be a port from 1 to 65535, got 0"),
        # Review: "Raw" was loaded (quoted) beside raw, which the models read unquoted; the run was green on old rows.
        (("load-raw", "OUT", "--schema", "Raw"), "argument --schema: 'Raw' is not a plain lower-case schema name"),
        # Review: PostgreSQL refused the side schema pg_xyz__loading with a traceback (ReservedName).
        (("load-raw", "OUT", "--schema", "pg_xyz"), "'pg_xyz' is not a plain lower-case schema name (letters"),
        (("load-raw", "OUT", "--schema", "pg_xyz"), "nor with pg_, which PostgreSQL reserves"),
        (("load-raw", "OUT", "--schema", "order"), "'order' is a word SQL reserves, which the models cannot read"),
        # Review: a 63-character name's side schema, cut to 63, was the target's own name; the load failed misleadingly.
        (("load-raw", "OUT", "--schema", "r" * 55), "at most 54 characters, so that load-raw's side schema"),
        # User trial: "required: action, psql_args", though psql's own options may be left out.
        (("db",), "the following arguments are required: action\n"),
    ],
)
def test_a_bad_option_is_refused_with_its_reason_before_anything_runs(tmp_path, args, reason, capsys):
    """Parsed in this process: were a bad port let through, the command itself (a whole Airflow) never starts."""
    from greenery import cli

    args = [str(tmp_path / "out") if a == "OUT" else a for a in args]
    with pytest.raises(SystemExit) as exited:
        cli.build_parser().parse_args(args)
    assert exited.value.code == 2 and reason in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_range_backwards_or_a_file_for_a_folder_is_one_line_and_starts_nothing(tmp_path):
    env = {**os.environ, "GREENERY_STATE_DIR": str(tmp_path / "state"), "AIRFLOW_HOME": str(tmp_path / "airflow")}
    env.pop("AIRFLOW_CONN_GREENERY_WAREHOUSE", None)  # else it would not start the private server at all
    done = greenery("run", "--date", "2021-02-12", "--end-date", "2021-02-10", env=env)
    assert done.returncode == 2, done
    assert "error: --end-date 2021-02-10 is before --date 2021-02-12; nothing was run" in done.stderr
    assert "embedded PostgreSQL" not in done.stdout and not (tmp_path / "state" / "pg").exists()
    # Review: a mistyped year (9999) ran, failed on its missing raw data and paged on-call.
    done = greenery("run", "--date", "2021-02-12", "--end-date", "9999-12-30", env=env)
    assert done.returncode == 2, done
    assert "error: 9999-12-30 is after today (" in done.stderr and "nothing was run" in done.stderr
    assert not (tmp_path / "state" / "pg").exists()
    (tmp_path / "a-file").write_text("mine")
    done = greenery("generate", str(tmp_path / "a-file"), env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert f"error: {tmp_path / 'a-file'}: exists and is not a folder; nothing was written" in done.stderr
    assert (tmp_path / "a-file").read_text() == "mine"


def test_an_error_line_masks_a_login_its_message_holds(tmp_path, monkeypatch, capsys):
    """Review: the CLI's own `error:` lines were not masked as the alerts, the view and the records are (their
    messages are the product's own, but one may quote a URL or a connection it was given)."""
    from greenery import cli

    def answers(args):
        raise UsageError("cannot read postgresql://analyst:s3cret-pw@db.internal/greenery")

    monkeypatch.setattr(cli, "cmd_answers", answers)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    assert cli.main(["answers"]) == 2
    assert capsys.readouterr().err == "error: cannot read postgresql://***@db.internal/greenery\n"


def test_initdbs_own_lines_stay_lines_indented_under_the_error(tmp_path, monkeypatch, capsys):
    """Diff review: escaping every newline of a known error printed initdb's several lines of stderr as one line of
    literal \\n's. They are initdb's words, not a value: a line each, indented (no line of it begins "error:")."""
    from greenery import cli
    from greenery.dev.embedded_pg import InitdbFailed

    def answers(args):
        said = "initdb: error: cannot be run as root\ninitdb: hint: Please log in as the (unprivileged) user\x1b[31m\n"
        raise InitdbFailed(1, ["initdb"], "", said, folder=tmp_path / "pg")

    monkeypatch.setattr(cli, "cmd_answers", answers)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    assert cli.main(["answers"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: initdb of {tmp_path / 'pg'} exited with status 1: initdb: error: cannot be run as root",
        "  initdb: hint: Please log in as the (unprivileged) user\\x1b[31m",
    ]


def test_an_error_line_shows_raw_values_and_file_names_escaped_on_their_line(tmp_path, monkeypatch, capsys):
    """Review: a duplicated key loaded from a CSV, "evil\nerror: all fine" with a direction override and a terminal
    escape, printed a forged `error:` line of its own and recoloured the terminal; file names alike. A suite's
    problems keep one line per file."""
    from greenery import cli
    from greenery.checks.suites import SuiteDefinitionError
    from greenery.sources.load import RawLoadError

    hostile = "evil\nerror: all fine\u202e\x1b[31mRED"
    errors = iter(
        [
            RawLoadError(f"orders.csv: order_id {hostile} is there twice"),
            SuiteDefinitionError(f"a{hostile}.json: expected a JSON object", "b.json: line 3: a key given twice"),
        ]
    )

    def answers(args):
        raise next(errors)

    monkeypatch.setattr(cli, "cmd_answers", answers)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    assert cli.main(["answers"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: orders.csv: order_id evil\\nerror: all fine\\u202e\\x1b[31mRED is there twice"
    ]
    assert cli.main(["answers"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: aevil\\nerror: all fine\\u202e\\x1b[31mRED.json: expected a JSON object",
        "b.json: line 3: a key given twice",
    ]


def test_log_lines_a_closed_pipe_refused_are_dropped_and_other_logging_errors_still_said(capsys):
    """Review: `greenery run --verbose | head` printed 214 "--- Logging error ---" tracebacks (34,543 lines) once the
    reader left: each log line the closed pipe refused. Those are dropped; a logging error of another kind is not."""
    import logging

    from greenery import cli

    class Refusing:
        def __init__(self, error):
            self.error = error

        def write(self, text):
            raise self.error

        def flush(self):
            pass

    logger = logging.getLogger("greenery.test.closed_pipe")
    logger.propagate = False
    for error, said in ((BrokenPipeError(32, "Broken pipe"), False), (ValueError("I/O on a closed file"), True)):
        handler = logging.StreamHandler(Refusing(error))
        logger.addHandler(handler)
        try:
            with cli._closed_pipe_lines_dropped():
                logger.warning("a task's log line")
        finally:
            logger.removeHandler(handler)
        assert ("--- Logging error ---" in capsys.readouterr().err) is said, error
    assert logging.Handler.handleError.__name__ == "handleError"  # put back


@pytest.mark.parametrize(
    "where",
    [
        ["-d", "postgres"],
        ["-dpostgres"],
        ["--port=5432"],
        ["-h", "elsewhere"],
        ["-Xd", "postgres"],
        ["--db=x"],
        ["--user=x"],
    ],
)
def test_db_psql_refuses_options_that_would_connect_elsewhere(where):
    """Diff review: bundled short options and abbreviated long ones, which psql's getopt takes, passed too."""
    from greenery.dev import psql

    with pytest.raises(UsageError, match=f"^greenery db psql connects to the embedded server itself: {where[0]} "):
        psql.run("postgresql://greenery@127.0.0.1:9/greenery", ["-X", *where, "-c", "select 1"])
    # psql's other options, and values that look like options, are psql's own.
    for own in (["-P", "format=csv"], ["-H"], ["--help"], ["-c", "-d"], ["-cselect 1"], ["-v", "d=1"], ["--pset=x"]):
        assert psql.elsewhere(own) == [], own


def test_generate_into_a_folder_it_cannot_make_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    """Review: below a file (a-file/sub) or where nothing can be made (/proc/gen), a traceback and exit 1."""
    from greenery import cli

    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    (tmp_path / "a-file").write_text("mine")
    for folder, reason in (
        (tmp_path / "a-file" / "sub", "Not a directory"),
        (Path("/proc/greenery-gen"), "No such file or directory"),
    ):
        assert cli.main(["generate", str(folder)]) == 2
        assert capsys.readouterr().err == f"error: {folder}: cannot be made a folder: {reason}; nothing was written\n"
    assert (tmp_path / "a-file").read_text() == "mine"


# Written out rather than imported, so a rule that stops refusing pg_ or long names fails here.
SCHEMA_RULE = (
    "expected a plain lower-case schema name (letters a-z, digits, underscores; not starting with a digit, nor with"
    " pg_, which PostgreSQL reserves; at most 54 characters, so that load-raw's side schema <name>__loading fits"
    " PostgreSQL's 63)"
)
NUMBER_SETTINGS = (
    "GREENERY_ALERT_SUPPRESS_HOURS",
    "GREENERY_RETRIES",
    "GREENERY_RETRY_DELAY_SECONDS",
    "GREENERY_TASK_TIMEOUT_MINUTES",
    "GREENERY_ALERT_RETRIES",
    "GREENERY_ALERT_RETRY_DELAY_SECONDS",
    "GREENERY_BUILD_TTL_HOURS",
    "GREENERY_VALIDATION_CONNECTIONS",
    "GREENERY_PUBLISH_LOCK_WAIT_SECONDS",
)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("GREENERY_START_DATE", "garbage", "expected a date written YYYY-MM-DD"),
        ("GREENERY_START_DATE", "2021-02-30", "expected a date YYYY-MM-DD: day is out of range for month"),
        # Review: taken, as --date refuses them; 2021-W06 as 2021-02-08.
        ("GREENERY_START_DATE", "20210210", "expected a date written YYYY-MM-DD"),
        ("GREENERY_START_DATE", "2021-W06", "expected a date written YYYY-MM-DD"),
        # Review: Python reads 1_0 as 10 and Arabic-Indic digits; a TTL of 0 was told "from 0", then refused.
        ("GREENERY_RETRIES", "1_0", "expected a whole number"),
        ("GREENERY_ALERT_SUPPRESS_HOURS", "\u0663", "expected a number"),
        ("GREENERY_BUILD_TTL_HOURS", "-1", "expected at least 1 h (an hour, and the task timeout"),
        # Review: taken as connection ids; ' ' made the CLI use its private database, 'None' failed alert_slack on
        # every run after publishing.
        *[
            (name, value, "expected an Airflow connection id")
            for name in ("GREENERY_WAREHOUSE_CONN_ID", "GREENERY_ALERT_CONN_ID", "GREENERY_SUMMARY_CONN_ID")
            for value in (" ", "None", "my conn")
        ],
        # Review: "none" turns the alert off; the digest's and the warehouse's looked it up as a connection.
        *[
            (name, "none", "expected an Airflow connection id")
            for name in ("GREENERY_WAREHOUSE_CONN_ID", "GREENERY_SUMMARY_CONN_ID", "GREENERY_DIGEST_EMAIL_CONN_ID")
        ],
        # Review: the loader quoted "Raw" while the models read raw: the old data published behind a green run.
        ("GREENERY_RAW_SCHEMA", "Raw", "expected a plain lower-case schema name"),
        ("GREENERY_RAW_SCHEMA", "raw-x", "expected a plain lower-case schema name"),
        # Review: a traceback (ReservedName) at the load; a 63-character name's side schema was its own name.
        ("GREENERY_RAW_SCHEMA", "pg_raw", SCHEMA_RULE),
        ("GREENERY_RAW_SCHEMA", "r" * 63, SCHEMA_RULE),
        ("GREENERY_RETRIES", "two", "expected a whole number"),
        # Review: nan and inf ended in tracebacks; 1e12 minutes failed two tasks with an OverflowError and paged.
        *[(name, value, "expected a ") for name in NUMBER_SETTINGS for value in ("nan", "inf", "1e12")],
        # Review: a misspelt name was ignored in silence (tests/test_dag_integrity.py's MISSPELT).
        ("GREENERY_EXPECTATION_DIR", "/x", "no such setting; did you mean GREENERY_EXPECTATIONS_DIR?"),
        # User trial: taken as it was; the alerts' Data Docs button vanished without a word.
        ("GREENERY_DATA_DOCS_BASE_URL", "not a url", "expected an http:// or https:// address"),
        ("GREENERY_DATA_DOCS_BASE_URL", "javascript:alert(1)", "expected an http:// or https:// address"),
        # Review: taken; each Data Docs page's name went after the query (…/?a=1/index.html): every link broken.
        *[
            ("GREENERY_DATA_DOCS_BASE_URL", value, "expected an http:// or https:// address, without ?query")
            for value in ("http://docs.example/d?a=1", "http://docs.example/?", "http://docs.example/d#top")
        ],
    ],
)
def test_a_bad_setting_is_one_line_naming_it(name, value, expected, tmp_path, capsys, monkeypatch):
    """Review: the parser's defaults read the settings outside main's handler: a traceback and exit 1."""
    from greenery import cli

    monkeypatch.setenv(name, value)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    assert cli.main(["answers"]) == 2
    err = capsys.readouterr().err
    shown = name if expected.startswith("no such setting") else f"{name}={value!r}"  # an unknown name's value is not
    assert err.startswith(f"error: {shown}: {expected}") and err.count("\n") == 1, err


def test_connection_ids_airflow_takes_are_taken():
    """Review: the first rule was narrower than Airflow's (RE_SANITIZE_CONN_ID): a secrets backend's aws/warehouse or
    wh:prod was refused."""
    for conn_id in ("aws/warehouse", "wh:prod", "dw#1", "a" * 250):
        assert config.get({"GREENERY_WAREHOUSE_CONN_ID": conn_id}).warehouse_conn_id == conn_id
    with pytest.raises(config.SettingError, match="at most 250"):
        config.get({"GREENERY_WAREHOUSE_CONN_ID": "a" * 251})


@pytest.mark.parametrize("command", ["answers", "load-raw", "run", "ui"])
def test_a_warehouse_connection_named_and_not_defined_is_refused_not_replaced_by_the_embedded_one(command, tmp_path):
    """Review: GREENERY_WAREHOUSE_CONN_ID misspelt (its AIRFLOW_CONN_ not set) and the command said "using the
    embedded PostgreSQL", printed its figures, exit 0; load-raw and run would have written there. In a process of its
    own: `run` and `ui` set Airflow up before they look for the warehouse."""
    args = {"answers": [], "load-raw": [str(tmp_path)], "run": ["--date", "2021-02-11"], "ui": []}[command]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "GREENERY_"))}
    env.update(
        GREENERY_STATE_DIR=str(tmp_path / "state"),
        AIRFLOW_CONN_GREENERY_WAREHOUSE="postgresql://u:pw@127.0.0.1:1/prod",
        GREENERY_WAREHOUSE_CONN_ID="greenery_warehous",
    )
    done = greenery(command, *args, env=env)
    assert done.returncode == 2 and done.stderr == (
        "error: GREENERY_WAREHOUSE_CONN_ID='greenery_warehous': no such connection (AIRFLOW_CONN_GREENERY_WAREHOUS is"
        " not set; the greenery command reads connections from the environment); unset GREENERY_WAREHOUSE_CONN_ID to"
        " use the connection AIRFLOW_CONN_GREENERY_WAREHOUSE defines; nothing was done\n"
    ), done
    assert "embedded PostgreSQL in" not in done.stdout and not (tmp_path / "state" / "pg").exists()


@pytest.mark.parametrize("command_args", [("db", "status"), ("answers",)])
def test_a_state_folder_that_cannot_be_one_is_a_line_naming_the_setting(command_args, tmp_path):
    """Review (user trial): GREENERY_STATE_DIR set to a file (or /proc/...) ended every command, `db status` too, in a
    NotADirectoryError traceback, exit 1."""
    (tmp_path / "statefile").write_text("")
    env = {k: v for k, v in os.environ.items() if k not in ("AIRFLOW_HOME", "AIRFLOW_CONN_GREENERY_WAREHOUSE")}
    done = greenery(*command_args, env={**env, "GREENERY_STATE_DIR": str(tmp_path / "statefile")})
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    said = f"error: {tmp_path / 'statefile' / 'airflow'}: cannot make Airflow's home there (Not a directory); set"
    assert done.stderr.startswith(said) and "GREENERY_STATE_DIR" in done.stderr and done.stderr.count("\n") == 1


def test_a_stop_names_the_asked_days_not_run_and_only_for_its_own_range(monkeypatch):
    """Review: a range stopped part-way named the stopped day alone; the fix's review: a run of another day, left
    behind by a killed command and failed by this one, was paged with this command's range."""
    from greenery.dev import cli_runs

    day = dt.date
    monkeypatch.setattr(cli_runs, "_asked", [[day(2021, 2, 10) + dt.timedelta(days=n) for n in range(4)]])
    assert cli_runs.not_run_after(day(2021, 2, 11)) == "; not run: 2021-02-12 to 2021-02-13 (2 days)"
    assert cli_runs.not_run_after(day(2021, 2, 10), inclusive=True) == "; not run: 2021-02-10 to 2021-02-13 (4 days)"
    assert cli_runs.not_run_after(day(2021, 2, 12)) == "; not run: 2021-02-13"
    assert cli_runs.not_run_after(day(2021, 2, 13)) == "" == cli_runs.not_run_after(day(2021, 2, 13), inclusive=True)
    assert cli_runs.not_run_after(day(2021, 1, 5)) == ""  # a run left behind by another command
    assert cli_runs.run_again(day(2021, 2, 11)) == "greenery run --date 2021-02-11 --end-date 2021-02-13"
    assert cli_runs.run_again(day(2021, 2, 13)) == "greenery run --date 2021-02-13"
    assert cli_runs.run_again(day(2021, 1, 5)) == "greenery run --date 2021-01-05"


@pytest.mark.db
def test_a_task_stopped_by_the_user_is_told_from_a_failure(warehouse_url):
    """Review: the failure of a task Ctrl-C or SIGTERM stopped got a readable record, which the command no longer
    recognised as a stop: exit 1 as a failure (not 130 or 143), and no page for a SIGTERM."""
    from types import SimpleNamespace

    from greenery import audit
    from greenery.dev import cli_runs
    from greenery.tasks.paging import describe

    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        audit.record_task_failure(conn, "stopped", "validate", dt.date(2021, 2, 12), describe(KeyboardInterrupt()))
        audit.record_task_failure(conn, "failed", "validate", dt.date(2021, 2, 12), describe(ValueError("x")))
        audit.record_task_failure(conn, "older", "validate", dt.date(2021, 2, 12), "KeyboardInterrupt: -")
    assert cli_runs.stopped_by_the_user(SimpleNamespace(run_id="stopped"))
    assert cli_runs.stopped_by_the_user(SimpleNamespace(run_id="older"))  # as recorded before
    assert not cli_runs.stopped_by_the_user(SimpleNamespace(run_id="failed"))


@pytest.mark.parametrize("name", [*NUMBER_SETTINGS, "GREENERY_START_DATE"])
def test_an_empty_number_or_date_setting_is_its_default_as_every_other_setting(name):
    """Review: refused ("expected a whole number"), where every other setting takes empty for unset, and Compose's
    ``GREENERY_X: ${GREENERY_X:-}`` (README: how a setting reaches the containers) passes an empty value."""
    from greenery import config

    assert config.get({name: ""}) == config.get({})


def test_every_number_setting_is_in_the_bad_setting_test():
    from greenery import config

    source = Path(config.__file__).read_text()
    assert set(re.findall(r'_number\(env, "(GREENERY_[A-Z_]+)"', source)) == set(NUMBER_SETTINGS)


def test_a_reader_that_leaves_early_ends_the_command_quietly(cli_env):
    """Review: `greenery answers | head` ended in a BrokenPipeError traceback. The reader here leaves before the
    first line: the command exits as a shell reports a closed pipe (128 + SIGPIPE), saying nothing."""
    proc = subprocess.Popen(
        command("answers", "--date", "2021-02-12"), env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


# A live scheduler on the CLI's Airflow state and greenery_daily unpaused, as `greenery ui` leaves them once the
# DAG is unpaused there; with controls: a scheduler whose heartbeat stopped, and the DAG paused.
SCHEDULER_BESIDE = """
import datetime as dt, sys
from airflow.jobs.job import Job
from airflow.models.dag import DagModel
from airflow.models.dagbundle import DagBundleModel
from airflow.utils.session import create_session
from greenery.dev import local_airflow

with create_session() as session:
    session.merge(DagBundleModel(name="dags-folder"))
    session.flush()
    session.merge(DagModel(dag_id="greenery_daily", bundle_name="dags-folder", is_paused=False))
    job = Job(job_type="SchedulerJob")
    job.state, job.hostname = "running", "the-ui"
    job.latest_heartbeat = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    session.add(job)
local_airflow.refuse_beside_a_scheduler("greenery_daily")  # its heartbeat stopped: no refusal
with create_session() as session:
    session.query(Job).update({Job.latest_heartbeat: dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)})
    session.query(DagModel).update({DagModel.is_paused: True})
local_airflow.refuse_beside_a_scheduler("greenery_daily")  # paused: the scheduler leaves the run alone
with create_session() as session:
    session.query(DagModel).update({DagModel.is_paused: False})
try:
    local_airflow.refuse_beside_a_scheduler("greenery_daily")
except local_airflow.SchedulerAliveError:
    sys.exit(0)
sys.exit("not refused")
"""


def test_a_run_beside_a_live_scheduler_with_the_dag_unpaused_is_refused_before_it_builds(cli_env, published_url):
    """Review: with `greenery ui` up and the DAG unpaused, its scheduler queued the CLI's own tasks too; one of the
    two failed each (TaskAlreadyRunningError), and on-call was paged for a killed task, once twice."""
    marked = subprocess.run([sys.executable, "-c", SCHEDULER_BESIDE], env=cli_env, capture_output=True, text=True)
    assert marked.returncode == 0, marked.stderr[-2000:]
    done = greenery("run", "--date", "2021-02-12", env=cli_env)
    assert done.returncode == 2, done.stdout + done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("error: a scheduler (on the-ui) runs on this Airflow state") and "unpaused" in line, line
    with psycopg.connect(published_url) as conn:
        runs = conn.execute("select count(*) from greenery_audit.builds where run_id like 'manual__%'").fetchone()[0]
    assert runs == 0, "refused before prepare_build"
    # Review: the demo replaced raw with generated data first, then was refused.
    demo = greenery("demo", env=cli_env)
    assert (demo.returncode, demo.stdout) == (2, ""), demo.stdout + demo.stderr
    assert demo.stderr.startswith("error: a scheduler (on the-ui) runs on this Airflow state"), demo.stderr
    assert not (Path(cli_env["GREENERY_STATE_DIR"]) / "pg").exists(), "the embedded server was made for nothing"
    # Review: `greenery ui` started while a `greenery run` ran (the DAG unpaused): its scheduler took the run's tasks.
    from greenery.dev import cli_runs

    runner = subprocess.Popen(["sleep", "120"])  # a live process listed as running a day, as `greenery run` lists it
    try:
        registry = Path(cli_env["AIRFLOW_HOME"]) / cli_runs.REGISTRY
        registry.mkdir(exist_ok=True)
        listed = {"dag_id": "greenery_daily", "logical_date": "2021-02-12T08:00:00+00:00"}
        listed["started"] = cli_runs._start_of(runner.pid)
        (registry / f"{runner.pid}.json").write_text(json.dumps(listed))
        ui = greenery("ui", "--port", "18999", env=cli_env)
    finally:
        runner.kill()
        runner.wait()
    assert (ui.returncode, ui.stdout) == (2, ""), ui.stdout + ui.stderr
    assert ui.stderr.startswith(f"error: greenery run is running 2021-02-12 (pid {runner.pid}) on this Airflow"), ui


def test_format_suites_reads_every_file_before_it_writes_one(tmp_path, capsys, monkeypatch):
    """A missing or malformed file is named with its line and column, and no file is changed, not even one
    listed before it that needs formatting. The refusals run ``cli.main`` in this process (each subprocess
    imported GX again: 30 of the file's worker-seconds); the success goes through the real command."""
    from greenery import cli

    def refused(*args: str) -> str:
        assert cli.main(["format-suites", *args]) == 2
        return capsys.readouterr().err

    unformatted = tmp_path / "orders.json"
    suite = Path(config.get().expectations_dir) / "stg_postgres__orders.json"
    unformatted.write_text(json.dumps(json.loads(suite.read_text())))
    before = unformatted.read_bytes()
    broken = tmp_path / "broken.json"
    broken.write_text('{"name": "broken",\n  "expectations": [\n')
    not_a_suite = tmp_path / "list.json"
    not_a_suite.write_text("[]\n")
    # GX drops an expectation it cannot read with a log line: formatting deleted it from the file, exit 0.
    typo = tmp_path / "typo.json"
    data = json.loads(suite.read_text())
    data["expectations"][1]["type"] = "expect_column_values_to_be_unqiue"
    typo.write_text(json.dumps(data))
    # Review: json kept the second of two "expectations" arrays; the file was rewritten without the first's, exit 0.
    twice = tmp_path / "twice.json"
    twice.write_text(repeated_expectations(suite.read_text()))
    line = twice.read_text().count("\n", 0, twice.read_text().rindex('"expectations"')) + 1
    for bad, reason in (
        (tmp_path / "missing.json", f"{tmp_path / 'missing.json'}: no such suite file; nothing was changed"),
        (broken, f"{broken}, line 3, column 1: not JSON: Expecting value; nothing was changed"),
        (not_a_suite, f"{not_a_suite}: not a suite (a JSON object with a name and a list of expectations)"),
        (typo, f"{typo}: GX cannot read expectation 1 (expect_column_values_to_be_unqiue)"),
        (twice, f"{twice}, line {line}, column 3: the key 'expectations' is given twice in one object"),
    ):
        stderr = refused(str(unformatted), str(bad))
        assert f"error: {reason}" in stderr, stderr
        assert unformatted.read_bytes() == before
    assert typo.read_text() == json.dumps(data)
    # Review: a file that could not be written stopped it half way, the files before it rewritten. (As root any
    # file is writable: a folder in the way of the second file's temporary copy stands in for a read-only file.)
    second = tmp_path / "orders2.json"
    second.write_text(unformatted.read_text())
    (tmp_path / ".orders2.json.formatting").mkdir()
    stderr = refused(str(unformatted), str(second))
    assert "orders2.json.formatting: cannot be written (Is a directory); nothing was changed" in stderr, stderr
    assert unformatted.read_bytes() == before and not (tmp_path / ".orders.json.formatting").exists()
    (tmp_path / ".orders2.json.formatting").rmdir()
    done = subprocess.run(command("format-suites", str(unformatted)), capture_output=True, text=True)
    assert done.returncode == 0 and "1 of 1 suite file(s) changed" in done.stdout, done.stderr
    assert unformatted.read_bytes() != before  # the positive control: it did need formatting
    # A folder without suite files is an error, not "0 of 0 changed".
    monkeypatch.setenv("GREENERY_EXPECTATIONS_DIR", str(tmp_path / "none"))
    assert f"error: {tmp_path / 'none'}: no suite files (*.json) to format" in refused()


def test_format_suites_formats_a_file_named_twice_once(tmp_path, capsys, monkeypatch):
    """Review: one file under two spellings (relative, absolute) was staged twice to the same temporary file; the
    first replace rewrote it, the second found the temporary file gone: a FileNotFoundError traceback, exit 1."""
    from greenery import cli

    suite = Path(config.get().expectations_dir) / "stg_postgres__orders.json"
    unformatted = tmp_path / "orders.json"
    unformatted.write_text(json.dumps(json.loads(suite.read_text())))
    before = unformatted.read_bytes()
    monkeypatch.chdir(tmp_path)
    assert cli.main(["format-suites", "orders.json", str(unformatted)]) == 0
    out = capsys.readouterr().out
    assert out == "formatted orders.json\n1 of 1 suite file(s) changed\n", out
    assert unformatted.read_bytes() != before  # the positive control: it did need formatting
    assert sorted(p.name for p in tmp_path.iterdir()) == ["orders.json"], "no .formatting file left"


def test_a_broken_model_folder_is_one_line_naming_it(cli_env, tmp_path):
    """Review: a missing GREENERY_SQL_DIR (or a model's Jinja error) ended `greenery run` in a traceback. A folder
    without models is a bad setting (config.py), named as one."""
    done = greenery("run", "--date", "2021-02-12", env={**cli_env, "GREENERY_SQL_DIR": str(tmp_path / "none")})
    assert done.returncode == 2 and "Traceback" not in done.stderr, done
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: GREENERY_SQL_DIR='{tmp_path / 'none'}': no models there"), done


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GREENERY_ASSET_AUTHORITY", "warehouse:notaport"),
        ("GREENERY_ASSET_AUTHORITY", "warehouse:5432/x"),
        ("GREENERY_ASSET_DATABASE", "a/b"),
    ],
)
def test_a_bad_asset_setting_is_one_line_naming_it(name, value, tmp_path):
    """Review: Airflow's Asset URI check refused these while `greenery run` parsed the DAG: a traceback, exit 1."""
    env = {**os.environ, name: value, "GREENERY_STATE_DIR": str(tmp_path / "state")}
    done = greenery("run", "--date", "2021-02-12", env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"error: {name}={value!r}: expected "), done


def test_answers_are_as_of_the_day_asked_and_all_history_figures_say_so(cli_env):
    """Through a warehouse connection of another id (GREENERY_WAREHOUSE_CONN_ID, README; review: no test set it):
    the command reads that one, and starts no embedded PostgreSQL."""
    env = {**cli_env, "GREENERY_WAREHOUSE_CONN_ID": "shop_dw"}
    env["AIRFLOW_CONN_SHOP_DW"] = env.pop("AIRFLOW_CONN_GREENERY_WAREHOUSE")
    done = greenery("answers", "--date", "2021-02-12", env=env)
    assert done.returncode == 0, done.stderr
    assert "embedded PostgreSQL" not in done.stdout
    assert "as of the end of 2021-02-12 (marts.metrics_daily)" in done.stdout
    assert "repeat rate                        79.8%" in done.stdout
    assert "\n  (published by run baseline, 20" in done.stdout  # which publish made the day's figures, and when
    assert (
        "marts.fact_product: all history, as the last publish read raw: run baseline of 2021-02-12, 20" in done.stdout
    )
    assert "note:" not in done.stdout


def test_all_history_figures_name_the_run_that_published_last_not_the_latest_day(published_url):
    """Review: a backfill of 2021-02-11 published after the 12th's run rebuilt the whole-history tables, and the
    answers said they were as known to the run of the 12th."""
    import datetime as dt

    from greenery import answers

    with psycopg.connect(published_url, autocommit=True) as conn:
        assert answers.read(conn)["all_history_as_of"] == dt.date(2021, 2, 12)
        conn.execute(
            "insert into greenery_audit.publish_log select 'backfill__x', date '2021-02-11', now(), tables"
            " from greenery_audit.publish_log limit 1"
        )
        assert answers.read(conn)["earlier_day_published_after"] is None  # a first backfill of the 11th: no rerun
        conn.execute(  # the 11th had been published before the 12th's row too: the backfill published it again
            "insert into greenery_audit.publish_log select 'scheduled__11', date '2021-02-11',"
            " published_at - interval '1 hour', tables from greenery_audit.publish_log where run_id = 'baseline'"
        )
        found = answers.read(conn)
        assert found["all_history_as_of"] == dt.date(2021, 2, 11)
        # Review: the 12th's figures, made before the 11th was published again on changed raw, read as current.
        assert found["day_run"]["run_id"] == "baseline"
        assert found["earlier_day_published_after"]["run_id"] == "backfill__x"
        text = answers.format_answers(found)
        assert "  note: 2021-02-11 was published again after it (" in text, text
        assert "run 2021-02-12 again to count what it changed" in text
        assert "run backfill__x of 2021-02-11, " in text and "; not as of 2021-02-12" in text


def test_a_product_name_from_raw_is_shown_in_the_answers_never_obeyed_by_the_terminal(published_url):
    """Review: one product row in an extract could add a forged headline line to the answers (a quoted newline),
    write the analyst's clipboard (OSC 52) or hide what follows (ESC[8m). Shown as escapes, on its own line."""
    from greenery import answers

    forged = "Pothos\n  repeat rate   99.9%\x1b]52;c;ZWNobw==\x07\x1b[8m\r\u202e"
    with psycopg.connect(published_url) as conn:  # rolled back: the published copy is this test's own anyway
        conn.execute(
            "update marts.fact_product set product_name = %s where product_name ="
            " (select product_name from marts.fact_product order by conversion_rate desc nulls last, product_name"
            " limit 1)",
            (forged,),
        )
        conn.execute(  # wide characters take two columns each: the figures stay in line (user trial)
            "update marts.fact_product set product_name = '植物🌿' where product_name ="
            " (select product_name from marts.fact_product order by conversion_rate desc nulls last, product_name"
            " offset 1 limit 1)"
        )
        text = answers.format_answers(answers.read(conn))
    assert not {"\x1b", "\x07", "\r", "\u202e"} & set(text), text
    lines = text.splitlines()
    [at] = [i for i, line in enumerate(lines) if "Pothos" in line]
    # Longer than its column: on a line of its own, its figures under it, aligned (user trial: 300 characters).
    assert lines[at] == "  Pothos\\n  repeat rate   99.9%\\x1b]52;c;ZWNobw==\\x07\\x1b[8m\\r\\u202e", lines[at]
    assert re.fullmatch(r" {25} *\d+ of \d+ +sessions  .*", lines[at + 1]), lines[at + 1]
    assert sum("repeat rate" in line for line in lines) == 2  # the headline's, and the name's own line
    rows = [line for line in lines if line.endswith("%") and " sessions  " in line]
    assert len(rows) >= 3 and any("植物🌿" in row for row in rows), rows
    assert {answers._columns(row[: row.index(" of ")]) for row in rows} == {2 + answers.NAME_COLUMNS + 7}, rows


def test_all_history_figures_name_the_run_that_published_their_table_not_a_later_partial_publish(published_url):
    """Review: after a partial re-publish (a model cleared with its downstream tasks publishes those tables alone),
    the all-history figures named that run, which had not written fact_product nor repurchase_indicators."""
    from greenery import answers

    with psycopg.connect(published_url, autocommit=True) as conn:
        conn.execute(
            "insert into greenery_audit.publish_log values"
            " ('manual__delivery', date '2021-02-12', now() + interval '1 hour', '{marts.fact_delivery_performance}')"
        )
        found = answers.read(conn)
        assert found["all_history_run"]["run_id"] == "baseline"
        assert found["indicators_run"]["run_id"] == "baseline"
        text = answers.format_answers(found)
        assert "manual__delivery" not in text, text
        assert "marts.fact_product: all history, as the last publish read raw: run baseline of 2021-02-12, " in text
        conn.execute(  # another partial publish, of the indicators alone: each table names its own run
            "insert into greenery_audit.publish_log values"
            " ('manual__indicators', date '2021-02-12', now() + interval '2 hours', '{marts.repurchase_indicators}')"
        )
        text = answers.format_answers(answers.read(conn))
        assert "marts.fact_product: all history, as the last publish read raw: run baseline of 2021-02-12, " in text
        assert (
            "marts.repurchase_indicators: all history, as the last publish read raw: run manual__indicators of"
            " 2021-02-12, " in text
        ), text


@pytest.mark.parametrize("mart", ["fact_product", "repurchase_indicators"])
def test_answers_with_a_mart_dropped_is_one_line_naming_it(cli_env, published_url, mart):
    """Review: with marts.fact_product dropped by hand, `greenery answers` ended in an UndefinedTable traceback; with
    repurchase_indicators dropped, it printed "not built yet" and exited 0, the answers incomplete."""
    with psycopg.connect(published_url, autocommit=True) as conn:
        conn.execute(f"drop table marts.{mart} cascade")
    done = greenery("answers", env=cli_env)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done
    assert done.stderr.startswith(f'error: relation "marts.{mart}" does not exist: the marts are incomplete'), done


def test_answers_for_a_day_without_figures_is_one_line_not_a_traceback(cli_env):
    done = greenery("answers", "--date", "2021-02-11", env=cli_env)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "error: marts.metrics_daily has no figures for 2021-02-11: run the DAG for that day first"
    )
    assert "Traceback" not in done.stderr
    # Review: a day `greenery run` refuses as it stands is not "run the DAG for that day"; and a day before raw's
    # first order is no day to run at all (the advice to move GREENERY_START_DATE then failed).
    early = greenery("answers", "--date", "2021-02-09", env={**cli_env, "GREENERY_START_DATE": "2021-02-11"})
    assert early.returncode == 2 and early.stderr.strip().splitlines()[-1] == (
        "error: marts.metrics_daily has no figures for 2021-02-09: raw has no orders before 2021-02-10: there is no"
        " day 2021-02-09 to run"
    ), early.stderr
    # `greenery run` of that day likewise (user trial: it said to move GREENERY_START_DATE, and the run then failed
    # its source check and paged on-call).
    from greenery import cli

    with pytest.MonkeyPatch.context() as env:  # in this process: the refusal comes before anything runs
        env.setenv("GREENERY_START_DATE", "2021-02-11")
        with pytest.raises(cli.UsageError) as refused:
            cli.run_days([dt.date(2021, 2, 9)])
    assert str(refused.value) == (
        "2021-02-09 is before the pipeline's start date 2021-02-11: its run would build nothing. raw has no orders"
        " before 2021-02-10: there is no day 2021-02-09 to run. To backfill from 2021-02-10, set"
        " GREENERY_START_DATE=2021-02-10 and run that day."
    )
    # User trial: a day after raw's last events was "run the DAG for that day first", whose run failed its source
    # check and paged on-call.
    after = greenery("answers", "--date", "2021-02-15", env=cli_env)
    assert after.returncode == 2 and after.stderr.strip().splitlines()[-1] == (
        "error: marts.metrics_daily has no figures for 2021-02-15: raw has no events after 2021-02-12: load"
        " 2021-02-15's data, then run that day"
    ), after.stderr
    later = greenery("answers", "--date", "2021-02-10", env={**cli_env, "GREENERY_START_DATE": "2021-02-11"})
    assert later.returncode == 2 and later.stderr.strip().splitlines()[-1] == (
        "error: marts.metrics_daily has no figures for 2021-02-10: 2021-02-10 is before GREENERY_START_DATE"
        " (2021-02-11): set it to 2021-02-10 or earlier, then run that day"
    ), later.stderr


def greenery_started(*args: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        command(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.integration
def test_a_range_stops_at_its_first_failed_day_with_the_cause_while_another_command_publishes_a_day_beside_it(
    cli_env, published_url, tmp_path, new_airflow_home
):
    """Two `greenery run` at once on one warehouse (separate Airflow homes, as two users would): a range
    of 2021-02-12 to 02-14, and 2021-02-10 beside it. Both publish their days, never each other's. The range
    shows a line per day and stops at 2021-02-13, which has no events (the data ends on the 12th): its
    freshness check fails, with its cause. (The database already has 2021-02-12 published: the range reruns it.)

    GREENERY_START_DATE is the earliest day: with it on 2021-02-11, 2021-02-10 is refused before anything
    runs; with the default (2021-02-10) the same day runs and publishes, so history can be backfilled by
    moving the setting."""
    refused = greenery("run", "--date", "2021-02-10", env={**cli_env, "GREENERY_START_DATE": "2021-02-11"})
    assert refused.returncode == 2 and "GREENERY_START_DATE=2021-02-10" in refused.stderr, refused.stderr
    beside_env = {
        **cli_env,
        "AIRFLOW_HOME": str(new_airflow_home(tmp_path / "airflow-beside")),
        "GREENERY_STATE_DIR": str(tmp_path / "state-beside"),
        "GREENERY_ALERT_CONN_ID": "none",
    }
    from slack_server import FakeSlack, conn_env_var

    with FakeSlack() as slack:
        paged_env = {**cli_env, conn_env_var("slack_alerts"): slack.webhook_conn_json()}
        ranged = greenery_started("run", "--date", "2021-02-12", "--end-date", "2021-02-14", env=paged_env)
        beside = greenery_started("run", "--date", "2021-02-10", env=beside_env)
        stdout, stderr = ranged.communicate(timeout=600)
        beside_out = beside.communicate(timeout=600)
        pages = [json.dumps(p.body, ensure_ascii=False) for p in slack.webhook_posts()]
    assert beside.returncode == 0, beside_out
    # The red day's page gives the command that runs it and the rest of the range again (user trial: it said only to
    # clear the run in a UI nobody had started).
    [page] = [p for p in pages if "source data not ready for 2021-02-13" in p]
    assert "then run the day again: `greenery run --date 2021-02-13 --end-date 2021-02-14`" in page, page

    assert ranged.returncode == 1, stdout + stderr
    [log_line] = [line for line in stdout.splitlines() if line.startswith("Airflow's log of this command: ")]
    assert re.search(r"^\[1/3\] 2021-02-12 \.\.\. success in \d+\.\ds$", stdout, re.M), stdout
    assert re.search(r"^\[2/3\] 2021-02-13 \.\.\. failed in \d+\.\ds$", stdout, re.M), stdout
    assert "[3/3]" not in stdout  # stopped at the first failed day
    cause = [line for line in stderr.splitlines() if line.startswith("  check_source_freshness: ")]
    assert cause and "raw.events has no rows created in [2021-02-13, 2021-02-14)" in cause[0], stderr
    assert "Traceback" not in stderr
    log = Path(log_line.split(": ", 1)[1])
    assert log.is_file() and "greenery_daily" in log.read_text()
    assert "Task instance state updated" not in stdout  # Airflow's chatter went to the file

    with psycopg.connect(published_url, autocommit=True) as conn:
        days = [str(r[0]) for r in conn.execute("select as_of_date from marts.metrics_daily order by 1")]
        assert days == ["2021-02-10", "2021-02-12"]
        published = conn.execute(
            "select cardinality(tables) from greenery_audit.publish_log where run_id like 'manual__%'"
        ).fetchall()
        assert [n for (n,) in published] == [len(models.discover())] * 2, "every run published every model"


def _runs(home: str) -> dict[str, str]:
    """The runs in an Airflow home's metadata (SQLite), by id: their states."""
    with contextlib.closing(sqlite3.connect(Path(home) / "airflow.db", timeout=10)) as db:
        return dict(db.execute("select run_id, state from dag_run"))


def _running_run(home: str, proc: subprocess.Popen, timeout: float = 180) -> str:
    """Wait for ``proc`` to be inside a day's run; return the run's id."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        with contextlib.suppress(sqlite3.OperationalError):  # the run's process may hold a write lock
            if running := [run for run, state in _runs(home).items() if state == "running"]:
                time.sleep(2)  # into its tasks
                return running[0]
        time.sleep(0.2)
    raise AssertionError("the command started no run")


# `greenery` as a terminal's foreground job, whose Ctrl-C Python turns into KeyboardInterrupt: a shell starts a
# background one (this suite under `nohup ... &`) with SIGINT ignored, and Python then leaves it ignored.
FOREGROUND = "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler);"
FOREGROUND += " sys.argv[0] = 'greenery'; runpy.run_module('greenery.cli', run_name='__main__')"


@pytest.mark.integration
def test_a_range_whose_reader_leaves_says_which_days_did_not_run(cli_env):
    """Review: `greenery run --date A --end-date B | head -3` ran fewer days than asked and exited 141 saying
    nothing (a script without `pipefail` saw success). It says which days ran and which did not."""
    reader = greenery_started("run", "--date", "2021-02-11", "--end-date", "2021-02-12", env=cli_env)
    reader.stdout.close()  # the reader left before the first line
    err = reader.stderr.read()
    assert reader.wait(timeout=300) == 141, err
    said = "stopped: its output was closed at 2021-02-11: not run: 2021-02-11 to 2021-02-12 (2 days)"
    assert said in err and "Traceback" not in err, err
    assert not _runs(cli_env["AIRFLOW_HOME"]), "no day ran"


@pytest.mark.integration
def test_a_run_whose_reader_leaves_is_failed_says_so_and_leaves_nothing_running(cli_env):
    """Review: `greenery run --verbose | head -40` failed the day's tasks on the closed pipe, left the run *running*
    for good (unlisted: no later command failed it), paged nobody and exited 141 without a word. The reader left, as
    a Ctrl-C: the run is failed, one line says so, nobody is paged."""
    from slack_server import FakeSlack

    home = cli_env["AIRFLOW_HOME"]
    with FakeSlack() as slack:
        reader = subprocess.Popen(
            command("run", "--date", "2021-02-12", "--verbose"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**cli_env, "AIRFLOW_CONN_SLACK_ALERTS": slack.webhook_conn_json()},
        )
        run = _running_run(home, reader)
        reader.stdout.close()  # `head` has read its lines and left
        err = reader.stderr.read()
        assert reader.wait(timeout=300) == 141, err
        assert slack.webhook_posts() == [], "the reader's own action pages nobody"
    stopped = [line for line in err.splitlines() if line.startswith("stopped: ")]
    assert stopped == [f"stopped: its output was closed at 2021-02-12: its run {run} failed"], err[-3000:]
    assert _runs(home)[run] == "failed"
    assert "--- Logging error ---" not in err, err[-3000:]  # review: 200 tracebacks of log lines the pipe refused
    with contextlib.closing(sqlite3.connect(Path(home) / "airflow.db", timeout=10)) as db:
        [(start,)] = db.execute("select start_date from dag_run where run_id = ?", (run,))
    # Review: dag.test starts a run at its logical date; stopped, it lasted years in the UI.
    assert dt.datetime.fromisoformat(start).replace(tzinfo=dt.UTC) > dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    assert not list((Path(home) / "greenery-runs").iterdir())


@pytest.mark.integration
def test_a_run_stopped_by_ctrl_c_or_killed_is_failed_and_blocks_nothing_after_it(cli_env, published_url):
    """Review: a `greenery run` killed (kill -9) or stopped by Ctrl-C between two tasks left its run `running` in
    Airflow for good (dag.test runs have no scheduler job), and every run the UI's scheduler queued after it waited
    forever (max_active_runs=1), nobody paged; Ctrl-C inside a task was retried, or paged "KeyboardInterrupt";
    SIGTERM did not stop it. Now Ctrl-C stops the day (exit 130, one line, its run failed), SIGTERM too (143, and it
    pages once), and the next command fails the run of a killed one, saying so, and pages once (review: a cron job
    killed by the out-of-memory killer was found by nobody, and one killed after its publish committed was not said
    to have published). Ctrl-C pages nobody."""
    from slack_server import FakeSlack

    with FakeSlack() as slack:
        env = {**cli_env, "AIRFLOW_CONN_SLACK_ALERTS": slack.webhook_conn_json()}
        home = env["AIRFLOW_HOME"]
        interrupted = subprocess.Popen(
            [sys.executable, "-c", FOREGROUND, "run", "--date", "2021-02-12"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        first = _running_run(home, interrupted)
        interrupted.send_signal(signal.SIGINT)
        out, err = interrupted.communicate(timeout=300)
        # 130 as the command returns it, or ended by SIGINT once it returned (CPython does so when a library saw the
        # KeyboardInterrupt unhandled first, seen under load): a shell shows both as 130.
        assert interrupted.returncode in (130, -signal.SIGINT), out + err
        assert f"stopped: interrupted (Ctrl-C) at 2021-02-12: its run {first} failed" in err, err
        assert "Traceback" not in err and _runs(home)[first] == "failed"
        assert slack.webhook_posts() == []  # the user's own stop
        with psycopg.connect(published_url) as conn:  # what the view shows of it (when a task was stopped)
            said = [
                e for (e,) in conn.execute("select error from greenery_audit.task_failures where run_id = %s", (first,))
            ]
        assert all(e.startswith("stopped while it ran: `greenery run` was interrupted (Ctrl-C)") for e in said), said

        killed = greenery_started("run", "--date", "2021-02-11", env=env)
        second = _running_run(home, killed)
        killed.kill()
        killed.communicate()
        assert _runs(home)[second] == "running"
        with psycopg.connect(published_url, autocommit=True) as conn:  # as if killed right after publish's commit
            conn.execute("insert into greenery_audit.publish_log values (%s, '2021-02-11', now(), '{}')", (second,))
        after = greenery("run", "--date", "2021-02-12", env=env)
        assert after.returncode == 0, after.stdout + after.stderr
        said = f"marked failed: run {second} of greenery_daily, left running by a greenery run that stopped"
        assert f"{said} (pid {killed.pid}); on-call was paged; its tables WERE published" in after.stderr, after.stderr
        assert _runs(home)[second] == "failed"
        assert not list((Path(home) / "greenery-runs").iterdir())  # no process is listed any more
        [page] = slack.webhook_posts()
        text = json.dumps(page.body)
        assert "ended without a word" in text and second in text and "WERE published" in text, text

        # SIGTERM (`kill`, `timeout`, a service manager's stop) stops the day as Ctrl-C does, though Airflow's task
        # runner sets its own SIGTERM handler at each task (review: the run went on to its end), and pages once:
        # nobody may be watching (review: a cron job's `timeout` stopped runs in silence).
        # A range: the days after the one stopped are named, and the command given runs them too (review: the
        # command and the page named the stopped day alone, and the advice left the next day unrun).
        terminated = greenery_started("run", "--date", "2021-02-11", "--end-date", "2021-02-12", env=env)
        third = _running_run(home, terminated)
        terminated.terminate()
        out, err = terminated.communicate(timeout=300)
        assert terminated.returncode == 143, out + err
        said = f"stopped: terminated (SIGTERM) at 2021-02-11: its run {third} failed; not run: 2021-02-12; on-call"
        assert said in err and "Traceback" not in err and _runs(home)[third] == "failed", err
        _, page = slack.webhook_posts()  # the killed run's page is not sent again by this command
        assert "stopped by SIGTERM" in json.dumps(page.body) and third in json.dumps(page.body)
        assert "Run the day again: greenery run --date 2021-02-11 --end-date 2021-02-12 (or" in json.dumps(page.body)


def test_as_root_a_data_folder_the_server_user_cannot_enter_is_named(tmp_path, monkeypatch):
    from greenery.dev import embedded_pg

    closed = tmp_path / "closed"
    (closed / "state").mkdir(parents=True)
    closed.chmod(0o700)
    monkeypatch.setattr(embedded_pg.os, "geteuid", lambda: 0)
    with pytest.raises(embedded_pg.UnusableFolderError, match=rf"cannot enter {re.escape(str(closed))} \(mode 700\)"):
        embedded_pg.EmbeddedPostgres(closed / "state" / "pg")
    assert not (closed / "state" / "pg" / "PG_VERSION").exists()


def test_the_embedded_database_can_stay_up_between_commands(pg_tmp_path):
    env = {**os.environ, "GREENERY_STATE_DIR": str(pg_tmp_path / "state"), "AIRFLOW_HOME": str(pg_tmp_path / "airflow")}
    env.pop("AIRFLOW_CONN_GREENERY_WAREHOUSE", None)
    assert greenery("db", "status", env=env).returncode == 1
    try:
        started = greenery("db", "start", env=env)
        assert started.returncode == 0 and "running until `greenery db stop`" in started.stdout
        status = greenery("db", "status", env=env)
        assert status.returncode == 0 and "kept running" in status.stdout
        # Still up after the command ended: a client connects on its own.
        url = re.search(r"postgresql://\S+", started.stdout).group(0)
        with psycopg.connect(url) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
        psql = greenery("db", "psql", env=env, stdin="select 40 + 2 as answer;\n")
        assert psql.returncode == 0 and "42" in psql.stdout
        # psql's own options pass through (review: `greenery db psql -c ...` was refused by the argument parser),
        # and so does its exit status.
        one_line = greenery("db", "psql", "-X", "-A", "-t", "-c", "select 40 + 2", env=env)
        assert (one_line.returncode, one_line.stdout.strip()) == (0, "42"), one_line
        failed = greenery("db", "psql", "-X", "-c", "select no_such_column", env=env)
        assert failed.returncode != 0 and "no_such_column" in failed.stderr, failed
        # Review: with -d, psql took the embedded server's URL for a user name and went to the machine's default.
        elsewhere = greenery("db", "psql", "-d", "postgres", "-c", "select 1", env=env)
        assert elsewhere.returncode == 2 and elsewhere.stderr.startswith(
            "error: greenery db psql connects to the embedded server itself: -d would send psql elsewhere"
        ), elsewhere
        stray = greenery("db", "status", "-c", "select 1", env=env)
        assert stray.returncode == 2 and "takes no arguments" in stray.stderr, stray
        assert greenery("db", "status", env=env).returncode == 0  # psql did not stop the kept server
        # Another command still holds the server: `db stop` says so and stops nothing (pgserver stops a server
        # with its last handle only; before, it printed "stopped" and left the server running for good).
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLD_THE_SERVER, str(pg_tmp_path / "state" / "pg")],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout.readline().strip() == "up"
            refused = greenery("db", "stop", env=env)
            assert refused.returncode == 2 and "still used by another greenery command" in refused.stderr, refused
            assert "kept running" in greenery("db", "status", env=env).stdout
        finally:
            holder.kill()
            holder.wait(timeout=30)
    finally:
        stopped = greenery("db", "stop", env=env)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert greenery("db", "status", env=env).returncode == 1


@pytest.mark.integration
def test_ctrl_c_stops_greenery_ui_and_leaves_a_kept_database_up(pg_tmp_path, new_airflow_home):
    """The README: Ctrl-C stops `greenery ui`'s Airflow, and its embedded PostgreSQL unless `greenery db start` keeps
    it (review: the promise had no test; the command said it stopped the database either way)."""
    import psutil

    from greenery.dev import local_ui

    home = new_airflow_home(pg_tmp_path / "airflow")
    env = {**os.environ, "GREENERY_STATE_DIR": str(pg_tmp_path / "state"), "AIRFLOW_HOME": str(home)}
    env.pop("AIRFLOW_CONN_GREENERY_WAREHOUSE", None)
    assert greenery("db", "start", env=env).returncode == 0
    ui, components = None, []
    try:
        ui = subprocess.Popen(
            [sys.executable, "-c", FOREGROUND, "ui", "--port", str(local_ui.free_port())],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        said = []
        while not any(line.startswith("Ctrl-C stops") for line in said):  # the last line, once its API answers
            line = ui.stdout.readline()
            assert line, "".join(said) + (ui.stdout.read() or "")
            said.append(line)
        assert said[-1] == "Ctrl-C stops Airflow; the embedded PostgreSQL stays up (`greenery db start`).\n", said
        components = psutil.Process(ui.pid).children(recursive=True)
        names = {" ".join(c.cmdline()) for c in components}
        for name in ("api-server", "scheduler", "dag-processor", "triggerer"):
            assert any(name in n or name.replace("-", "_") in n for n in names), (name, names)
        ui.send_signal(signal.SIGINT)
        rest, _ = ui.communicate(timeout=120)
        assert ui.returncode == 0 and "stopping Airflow" in rest, rest
        _, alive = psutil.wait_procs(components, timeout=30)
        assert not alive, alive  # nothing of Airflow's is left running
        status = greenery("db", "status", env=env)
        assert status.returncode == 0 and "kept running" in status.stdout, status
    finally:
        if ui is not None:  # failed above: leave nothing running (review: Airflow's components outlived a failure)
            leftover = psutil.Process(ui.pid).children(recursive=True) if ui.poll() is None else []
            ui.kill()
            ui.wait(timeout=30)
            for process in [*leftover, *components]:
                with contextlib.suppress(psutil.Error):
                    process.kill()
        greenery("db", "stop", env=env)


def test_a_command_still_stops_the_server_after_another_one_was_killed(pg_tmp_path):
    """A command killed while it used the private server (SIGKILL, out of memory) never tells pgserver it is
    gone; the next command must still stop the server when it ends, as the README promises."""
    from greenery.dev import embedded_pg

    data_dir = pg_tmp_path / "pg"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_SERVER, str(data_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "up"
        holder.kill()
        holder.wait(timeout=30)
        server = embedded_pg.open_server(data_dir)  # a command starting: the server is still up
        server.stop()  # the command ending
        assert embedded_pg.running_pid(data_dir) is None, "the server ran on after the last command"
    finally:
        holder.kill()
        if (pid := embedded_pg.running_pid(data_dir)) is not None:
            os.kill(pid, signal.SIGINT)


HOLD_THE_SERVER = """
import sys, time
from greenery.dev.embedded_pg import open_server
open_server(sys.argv[1])
print("up", flush=True)
time.sleep(600)
"""


def test_a_server_that_is_gone_or_stopping_has_no_pid(tmp_path):
    """Its pid file read once, not looked for first: the server removes it as it stops, and a read between the two
    failed the test session's teardown with FileNotFoundError (seen once, 2026-12-03)."""
    from greenery.dev import embedded_pg

    assert embedded_pg.running_pid(tmp_path) is None  # no file at all
    (tmp_path / "postmaster.pid").write_text("999999999\n")
    assert embedded_pg.running_pid(tmp_path) is None  # no such process
    (tmp_path / "postmaster.pid").write_text(f"-{os.getpid()}\n")  # a standalone backend's (initdb's): no server
    assert embedded_pg.running_pid(tmp_path) is None


def test_a_server_whose_data_is_discarded_stops_without_its_shutdown_checkpoint(pg_tmp_path):
    """The test sessions' stop (tests/conftest.py): PostgreSQL's immediate shutdown, since the folder is deleted
    next; the cluster is left as a crash leaves it. The positive control, a normal stop, shuts it down cleanly."""
    from greenery.dev import embedded_pg, psql

    controldata = Path(psql.psql_path()).with_name("pg_controldata")

    def state(data_dir: Path) -> str:
        out = subprocess.run([controldata, str(data_dir)], capture_output=True, text=True, check=True).stdout
        return re.search(r"Database cluster state:\s+(.+)", out).group(1).strip()

    for discard, expected in ((False, "shut down"), (True, "in production")):
        server = embedded_pg.EmbeddedPostgres(pg_tmp_path / f"pg-{discard}")
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute("create table t as select g from generate_series(1, 100000) as g")
        server.stop(discard=discard)
        assert embedded_pg.running_pid(server.data_dir) is None
        assert state(server.data_dir) == expected, discard


def test_a_long_cause_keeps_its_first_lines_and_says_where_the_rest_is():

    verdict = "1 critical problem(s) in the data; nothing was published:\n- staging.x (from raw.x): unique(id): k x2\n"
    assert run_outcome.cause_lines(verdict) == [
        "1 critical problem(s) in the data; nothing was published:",
        "- staging.x (from raw.x): unique(id): k x2",
    ]
    traceback = "\n".join(f"line {i}" for i in range(40))
    lines = run_outcome.cause_lines(traceback)
    assert len(lines) == run_outcome.CAUSE_LINES and lines[-1] == "... (35 more lines in the log)"
    # Review: each line was cut at 300 characters without a mark, and a skipped-days error lost its advice.
    advice = "DaysNeverBuiltError: raw.events has 7029 rows " + "x" * 400 + " Run those days first: `airflow backfill`"
    assert run_outcome.cause_lines(advice) == [advice]
    long_cause = run_outcome.cause_lines(f"{advice}\n- " + "k" * 500)[1]
    assert len(long_cause) == run_outcome.OTHER_LINES and long_cause.endswith("…")


def test_a_red_run_that_published_says_so():
    """Review: with no Slack connection, a day that quarantined rows printed "failed" and alert_slack's error, and
    nothing said its marts had gone out."""
    import types

    def run(**states):
        tis = [types.SimpleNamespace(task_id=task_id, state=state) for task_id, state in states.items()]
        return types.SimpleNamespace(get_task_instances=lambda: tis)

    note = run_outcome.published_anyway(run(validate="success", publish="success", alert_slack="failed"))
    assert note and "WERE published" in note
    assert run_outcome.published_anyway(run(validate="failed", publish="upstream_failed")) is None
    assert run_outcome.published_anyway(run(publish="failed")) is None


@pytest.mark.parametrize("verbose", [False, True], ids=["quiet", "verbose"])
def test_a_run_names_its_log_file_only_when_it_writes_one(verbose, tmp_path, monkeypatch, capsys):
    """README (The CLI): Airflow's whole log goes to the file the command names; with --verbose to the terminal,
    and then no file is named (it named one it never wrote)."""
    import types

    from greenery import cli
    from greenery.dev import local_airflow

    failed_run = types.SimpleNamespace(state="failed", run_id="manual__x", get_task_instances=lambda: [])
    # Airflow imported first, under the session's home: imported below, under this test's, it kept this test's empty
    # metadata database for the rest of the worker's tests ('no such table: task_instance' in test_paging after it).
    import airflow.settings  # noqa: F401

    monkeypatch.setattr(cli, "STATE_DIR", tmp_path / "state")
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    monkeypatch.setattr(local_airflow, "prepare", lambda home: None)
    monkeypatch.setattr(local_airflow, "load_dag", lambda: types.SimpleNamespace(dag_id="greenery_daily"))
    monkeypatch.setattr(local_airflow, "refuse_beside_a_scheduler", lambda dag_id: None)
    monkeypatch.setattr(local_airflow, "run_day", lambda day, conf, dag, must_finish: failed_run)
    monkeypatch.setattr(local_airflow, "failed_tasks", lambda run: ["validate"])
    monkeypatch.setattr(run_outcome, "failures", lambda run, failed: [("validate", ["1 critical problem"])])
    # A range: the day after the red one did not run, and the line says so (README: The CLI).
    assert cli.run_days([dt.date(2021, 2, 12), dt.date(2021, 2, 13)], verbose=verbose) == 1
    out, err = capsys.readouterr()
    logs = sorted((tmp_path / "state" / "logs").glob("run-*.log"))
    named = [line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("Airflow's log of this command: ")]
    if verbose:
        assert (
            named == [] and logs == [] and "stopped at 2021-02-12; not run: 2021-02-13; the whole log is above" in err
        )
    else:
        assert named == [str(logs[0])] and f"not run: 2021-02-13; the whole log is in {logs[0]}" in err
    assert "  validate: 1 critical problem" in err


def test_an_unreachable_warehouse_is_one_line(monkeypatch):
    """Review: libpq's message went on after a newline and a tab ("Is the server running on that host ..."), so the
    command's error was two lines."""
    import socket

    from greenery import warehouse

    with socket.socket() as holder:  # bound, not listening: connections to it are refused
        holder.bind(("127.0.0.1", 0))
        url = f"postgresql://nobody@127.0.0.1:{holder.getsockname()[1]}/nowhere"
        monkeypatch.setenv(warehouse.conn_env_var(), warehouse.connection_json(url))
        with pytest.raises(warehouse.WarehouseUnavailableError) as err:
            warehouse.connect()
    assert "\n" not in str(err.value) and "Connection refused Is the server running" in str(err.value), err.value


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("postgres://u:s3cret-pw@host:notaport/db", "Port could not be cast to integer value as 'notaport'"),
        ('{"conn_type": "postgres", "host": "h", "port": "x", "password": "s3cret-pw"}', "port"),
        # Review: Airflow read it as a connection of no type and no host, and libpq tried this machine's socket.
        ("greenery:s3cret-pw@db.internal:5432/greenery", "no postgres scheme, no host: neither a URI nor JSON"),
        ("not a uri", "no postgres scheme, no host: neither a URI nor JSON"),
    ],
    ids=["uri", "json", "no scheme", "neither"],
)
def test_a_malformed_connection_variable_is_said_to_be_set_and_unparsable(monkeypatch, value, why):
    """Review: a port of "notaport" was reported as "The conn_id greenery_warehouse isn't defined ... (set it ... with
    AIRFLOW_CONN_GREENERY_WAREHOUSE)", a variable that was set."""
    from greenery import warehouse

    monkeypatch.setenv(warehouse.conn_env_var(), value)
    with pytest.raises(warehouse.WarehouseUnavailableError) as err:
        warehouse.connect()
    said = str(err.value)
    assert said.startswith("AIRFLOW_CONN_GREENERY_WAREHOUSE is set, but Airflow could not parse it"), said
    assert why in said and "isn't defined" not in said and "s3cret-pw" not in said and "\n" not in said, said


@pytest.mark.parametrize("extra", ['{"sslmode": "require"', '["sslmode", "require"]', '"sslmode=require"'])
def test_a_warehouse_connection_whose_extra_is_not_a_json_object_is_refused_naming_it(monkeypatch, extra):
    """Airflow reads such an extra as none (logging a traceback), and its sslmode went with it: a connection asked to
    require TLS connected without it, in silence. Refused before connecting, by the tasks and by GX's URL alike."""
    from greenery import warehouse

    conn = {"conn_type": "postgres", "host": "127.0.0.1", "port": 1, "password": "s3cret-pw", "extra": extra}
    monkeypatch.setenv(warehouse.conn_env_var(), json.dumps(conn))
    for reach in (warehouse.connect, warehouse.sqlalchemy_url):
        with pytest.raises(warehouse.WarehouseUnavailableError) as err:
            reach()
        said = str(err.value)
        assert said.startswith("the extra of Airflow connection 'greenery_warehouse' is not a JSON object ("), said
        assert "s3cret-pw" not in said and "Connection refused" not in said
    monkeypatch.setenv(warehouse.conn_env_var(), json.dumps({**conn, "extra": '{"sslmode": "disable"}'}))
    with pytest.raises(warehouse.WarehouseUnavailableError, match="Connection refused"):  # the control: it tries
        warehouse.connect()


def test_a_run_failing_on_an_unreachable_warehouse_says_so_not_just_see_the_log(monkeypatch):
    """The failure callback cannot record into a warehouse that does not answer; the summary of the failed
    tasks then says why nothing is recorded instead of "see the log" alone."""
    from types import SimpleNamespace

    from greenery import warehouse

    def unreachable():
        raise warehouse.WarehouseUnavailableError("cannot connect to 127.0.0.1:1 (greenery_warehouse)")

    monkeypatch.setattr(warehouse, "connect", unreachable)
    [(task, lines)] = run_outcome.failures(SimpleNamespace(run_id="r"), ["check_source_freshness"])
    assert task == "check_source_freshness"
    assert lines == [
        "the tasks' errors could not be read: the warehouse did not answer (cannot connect to 127.0.0.1:1"
        " (greenery_warehouse)); the log has them"
    ]

    def written_wrong():  # user trial: "the warehouse did not answer" of a connection nothing was sent through
        raise warehouse.ConnectionSettingError("the extra of Airflow connection 'greenery_warehouse' is not a JSON")

    monkeypatch.setattr(warehouse, "connect", written_wrong)
    [(_, lines)] = run_outcome.failures(SimpleNamespace(run_id="r"), ["check_source_freshness"])
    assert lines[0].startswith("the tasks' errors could not be read: the warehouse connection is written wrong (the ")


def test_answers_before_anything_was_published_is_one_line(db):
    from greenery import answers

    with pytest.raises(answers.NoAnswersError, match=r"marts\.metrics_daily does not exist: nothing was published yet"):
        answers.read(db)


def test_answers_for_a_role_that_cannot_read_the_marts_is_one_line_naming_what_to_grant(published_url):
    """Review: `greenery answers` as a role without usage on marts (or select on metrics_daily) ended in an
    InsufficientPrivilege traceback."""
    from helpers import may_log_in, roles
    from psycopg import sql

    from greenery import answers

    with psycopg.connect(published_url, autocommit=True) as admin, roles(admin, "reader") as (reader,):
        password = may_log_in(admin, reader)
        quoted = f'"{reader}"'  # as the message writes it, ready to paste
        grant = (
            f"grant usage on schema marts, greenery_audit to {quoted};"
            f" grant select on all tables in schema marts, greenery_audit to {quoted}"
        )
        with psycopg.connect(published_url, user=reader, password=password, autocommit=True) as conn:
            with pytest.raises(answers.NoAnswersError) as denied:
                answers.read(conn)
            assert str(denied.value) == (
                f"permission denied for schema marts (role {quoted}): the answers read the marts and"
                f" greenery_audit.publish_log; {grant}"
            )
            admin.execute(sql.SQL("grant usage on schema marts to {}").format(sql.Identifier(reader)))
            with pytest.raises(answers.NoAnswersError, match=r"^permission denied for table metrics_daily \(role"):
                answers.read(conn)
            for statement in grant.split(";"):
                admin.execute(statement)
            assert answers.read(conn)["metrics"]["as_of_date"]


def test_the_demo_never_writes_to_a_configured_warehouse(published_url, pg_admin_url, tmp_path, monkeypatch):
    """Review: with AIRFLOW_CONN_GREENERY_WAREHOUSE set, `greenery demo` loaded its generated data into that
    warehouse (raw.users: 130 rows became 6) and published its marts there, exit 0. It always takes the embedded
    PostgreSQL now (here a scratch database stands in for it; the DAG run and the answers are left out)."""
    import types

    from greenery import cli, warehouse
    from greenery.dev import embedded_pg

    scratch = warehouse.create_database(pg_admin_url, f"greenery_test_{os.getpid()}_demo")
    monkeypatch.setattr(
        embedded_pg, "open_server", lambda path: types.SimpleNamespace(url=lambda: scratch, data_dir=path)
    )
    monkeypatch.setattr(cli, "STATE_DIR", tmp_path)
    monkeypatch.setattr(cli, "_no_scheduler_running_the_dag", lambda: None)  # Airflow is left out
    ran_on = []
    monkeypatch.setattr(cli, "run_days", lambda days, **_: ran_on.append(os.environ[warehouse.conn_env_var()]) or 0)
    monkeypatch.setattr(cli, "print_answers", lambda day: 0)
    count = "select count(*) from raw.users"
    with psycopg.connect(published_url) as conn:
        before = conn.execute(count).fetchone()[0]
    assert cli.main(["demo", "--scale", "0.05"]) == 0
    with psycopg.connect(published_url) as conn:
        assert conn.execute(count).fetchone()[0] == before == 130
    with psycopg.connect(scratch) as conn:
        assert 0 < conn.execute(count).fetchone()[0] < before
    assert ran_on == [warehouse.connection_json(scratch)]


def test_the_demo_runs_the_last_day_with_orders(pg_admin_url, tmp_path, monkeypatch):
    """Review: the demo ran the last day with events, one past the generator's last order day: from --scale 3.5 on
    (a week of history) the volume check blocked that day's zero orders, and the demo failed."""
    import types

    from greenery import cli, warehouse
    from greenery.dev import embedded_pg

    # The demo sets the warehouse connection in this process's environment: restored afterwards (it leaked into the
    # worker's next file, where a view test found a warehouse it was meant not to have).
    monkeypatch.setenv(warehouse.conn_env_var(), "set")
    monkeypatch.delenv(warehouse.conn_env_var())
    scratch = warehouse.create_database(pg_admin_url, f"greenery_test_{os.getpid()}_demo_day")
    monkeypatch.setattr(
        embedded_pg, "open_server", lambda path: types.SimpleNamespace(url=lambda: scratch, data_dir=path)
    )
    monkeypatch.setattr(cli, "STATE_DIR", tmp_path)
    monkeypatch.setattr(cli, "_no_scheduler_running_the_dag", lambda: None)  # Airflow is left out
    ran, refreshed = [], []
    monkeypatch.setattr(
        cli,
        "run_days",
        lambda days, verbose=False, full_refresh=False: ran.extend(days) or refreshed.append(full_refresh) or 0,
    )
    monkeypatch.setattr(cli, "print_answers", lambda day: 0)
    assert cli.main(["demo", "--scale", "5"]) == 0
    with psycopg.connect(scratch) as conn:
        last_orders, last_events = conn.execute(
            "select (select max(created_at)::date from raw.orders), (select max(created_at)::date from raw.events)"
        ).fetchone()
    assert ran == [last_orders] and last_events > last_orders, (ran, last_orders, last_events)
    assert refreshed == [False]  # nothing published there yet: its first run reads all of raw anyway


def test_the_demo_over_tables_published_from_other_raw_rebuilds_them_from_its_own(published_url, tmp_path, monkeypatch):
    """Developer's trial: `greenery load-raw` of the real data and runs of its days, then `greenery demo` in the same
    state folder: its raw replaced whole, the run blocked on lost history and said to run the demo again, which
    failed the same way. Over published tables the demo's run is a full refresh (raw as the demo loaded it)."""
    import types

    from greenery import cli
    from greenery.dev import embedded_pg

    monkeypatch.setattr(
        embedded_pg, "open_server", lambda path: types.SimpleNamespace(url=lambda: published_url, data_dir=path)
    )
    monkeypatch.setattr(cli, "STATE_DIR", tmp_path)
    monkeypatch.setattr(cli, "_no_scheduler_running_the_dag", lambda: None)  # Airflow is left out
    refreshed = []
    monkeypatch.setattr(
        cli, "run_days", lambda days, verbose=False, full_refresh=False: refreshed.append(full_refresh) or 0
    )
    monkeypatch.setattr(cli, "print_answers", lambda day: 0)
    assert cli.main(["demo", "--scale", "0.05"]) == 0 and refreshed == [True]
    # Review: then every demo after the first was a full refresh; the same raw again is not (its content, not its load)
    assert cli.main(["demo", "--scale", "0.05"]) == 0 and refreshed == [True, False]


def test_a_green_day_says_what_it_quarantined_and_warned(warehouse_url):
    """Review: a day that quarantined rows or failed warnings printed a bare "success": only Slack or the Data
    quality view told. The line carries them, from the run's latest recorded validation."""
    from types import SimpleNamespace

    from greenery import audit, run_outcome

    clean = {"run_id": "clean", "logical_date": "2021-02-12", "failed_warning": 0, "quarantined": {}}
    found = {"run_id": "found", "logical_date": "2021-02-12", "failed_warning": 1, "quarantined": {"a": 2, "b": 1}}
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        for summary in (clean, found):
            audit.record_validation(conn, summary, published=True)
    assert run_outcome.notes(SimpleNamespace(run_id="clean", state="success")) == ""
    assert run_outcome.notes(SimpleNamespace(run_id="found", state="success")) == (
        " (1 warning, 3 rows quarantined: see the Data quality view; rows in quarantine.a, quarantine.b)"
    )
    assert run_outcome.notes(SimpleNamespace(run_id="found", state="failed")) == ""  # its causes follow instead
    # User trial: a day whose alert was held back as a repeat read the same as one that paged.
    skipped = [
        SimpleNamespace(task_id="publish", state="success"),
        SimpleNamespace(task_id="alert_slack", state="skipped"),
    ]
    assert run_outcome.notes(SimpleNamespace(run_id="found", state="success", get_task_instances=lambda: skipped)) == (
        " (1 warning, 3 rows quarantined: see the Data quality view; rows in quarantine.a, quarantine.b; not alerted:"
        " alert_slack skipped it, a repeat held back, sent by an earlier try or Slack off)"
    )
    assert run_outcome.notes(SimpleNamespace(run_id="unrecorded", state="success")) == (
        " (no validation is recorded for it)"
    )


def test_ctrl_c_outside_a_days_run_is_one_line(tmp_path):
    """Outside a day's run Ctrl-C was a KeyboardInterrupt traceback (second review); now one line and 130."""
    out = tmp_path / "csv"
    proc = subprocess.Popen(
        [sys.executable, "-c", FOREGROUND, "generate", str(out), "--scale", "200"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (out.is_dir() and any(out.iterdir())):  # writing its files
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate(timeout=5)
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, err.strip().splitlines()) == (130, ["stopped: interrupted (Ctrl-C)"]), err


def test_a_range_the_uis_scheduler_stops_half_way_fails_saying_what_ran_and_what_did_not(monkeypatch, capsys):
    """Review: a DAG unpaused in the UI while a range ran stopped the range before its next day with exit 2 and the
    refusal alone, as a wrong option is refused before anything runs: it had run days, and did less than asked."""
    import types

    from greenery import cli
    from greenery.dev import cli_runs, local_airflow

    days = [dt.date(2021, 2, 10) + dt.timedelta(days=n) for n in range(4)]
    ran = []

    def one_day(n, range_, day, dag, log_file, full_refresh, ran_today):
        if day == days[2]:  # the UI's scheduler came up meanwhile
            raise local_airflow.SchedulerAliveError("a scheduler (on the-ui) runs on this Airflow state")
        ran.append(day)
        return types.SimpleNamespace(state="success", run_id=f"manual__{day}")

    monkeypatch.setattr(cli, "_one_day", one_day)
    dag = types.SimpleNamespace(dag_id=config.DAG_ID)
    assert cli._each_day(days, dag, None, full_refresh=False) == 1
    assert ran == days[:2]
    assert capsys.readouterr().err.splitlines() == [
        "stopped before 2021-02-12: a scheduler (on the-ui) runs on this Airflow state",
        "  ran 2021-02-10 to 2021-02-11 (2 days); not run: 2021-02-12 to 2021-02-13 (2 days)",
    ]
    # Refused before its first day, nothing ran: the refusal is the command's (exit 2, one line: cli.main).
    with pytest.raises(local_airflow.SchedulerAliveError):
        cli._each_day(days[2:], dag, None, full_refresh=False)

    # Review: any other error on a later day (a run that ended with tasks unfinished, the metadata database locked)
    # ended the same way, exit 2 and the error alone; it says what ran, with the error on one line, masked.
    def unfinished(n, range_, day, dag, log_file, full_refresh, ran_today, on=days[1]):
        if day == on:
            error = local_airflow.RunDidNothingError("run manual__x ended 'running'\n at postgresql://u:hunter2@db/x")
            error.ran_in_part = True  # as check_ran says when some of its tasks finished
            raise error
        return types.SimpleNamespace(state="success", run_id=f"manual__{day}")

    monkeypatch.setattr(cli, "_one_day", unfinished)
    assert cli._each_day(days, dag, None, full_refresh=False) == 1
    assert capsys.readouterr().err.splitlines() == [
        "stopped at 2021-02-11: RunDidNothingError: run manual__x ended 'running' at postgresql://***@db/x",
        # Review: the day whose run ended unfinished was listed under "not run"; it ran, in part.
        "  ran 2021-02-10; 2021-02-11 ran in part (its run ended unfinished);"
        " not run: 2021-02-12 to 2021-02-13 (2 days)",
    ]
    # On the first day too: it ran, in part (review: exit 2, as if nothing had run).
    monkeypatch.setattr(cli, "_one_day", functools.partial(unfinished, on=days[0]))
    assert cli._each_day(days[:1], dag, None, full_refresh=False) == 1
    assert capsys.readouterr().err.splitlines()[1:] == ["  2021-02-10 ran in part (its run ended unfinished)"]

    # An error not of this package's kinds (a bug's) keeps its traceback after those lines (review: one line only).
    def broken(n, range_, day, dag, log_file, full_refresh, ran_today):
        if day == days[1]:
            raise AttributeError("'NoneType' object has no attribute 'state'")
        return types.SimpleNamespace(state="success", run_id=f"manual__{day}")

    monkeypatch.setattr(cli, "_one_day", broken)
    assert cli._each_day(days, dag, None, full_refresh=False) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[:2] == [
        "stopped at 2021-02-11: AttributeError: 'NoneType' object has no attribute 'state'",
        "  ran 2021-02-10; not run: 2021-02-11 to 2021-02-13 (3 days)",
    ]
    assert err[2] == "Traceback (most recent call last):" and "in broken" in "\n".join(err), err

    # A stop on a later day (Ctrl-C, a reader gone) is not such an error: it keeps its own line and status (130, 141).
    def interrupted(n, range_, day, dag, log_file, full_refresh, ran_today):
        if day == days[1]:
            raise cli_runs.RunInterrupted("interrupted (Ctrl-C) at 2021-02-11: its run manual__x failed", 130)
        return types.SimpleNamespace(state="success", run_id=f"manual__{day}")

    monkeypatch.setattr(cli, "_one_day", interrupted)
    with pytest.raises(cli_runs.RunInterrupted) as stopped:
        cli._each_day(days, dag, None, full_refresh=False)
    assert stopped.value.exit_status == 130 and capsys.readouterr().err == ""


def test_a_days_progress_line_ends_before_the_stop_when_its_run_raises(monkeypatch, capsys, tmp_path):
    """Review: `[2/3] D ...` was left open on stdout when the day's run raised (a Ctrl-C, an unfinished run), and the
    terminal showed the stop's own line (stderr) run on after it. A reader that left is written nothing more: the
    day's own error is what the command says, not the closed pipe's."""
    import io

    from greenery import cli
    from greenery.dev import local_airflow

    days = [dt.date(2021, 2, 10) + dt.timedelta(days=n) for n in range(3)]
    dag = types.SimpleNamespace(dag_id=config.DAG_ID)
    monkeypatch.setattr(local_airflow, "refuse_beside_a_scheduler", lambda dag_id: None)
    for exc in (local_airflow.RunDidNothingError("run manual__x ended 'running'"), KeyboardInterrupt()):

        def run_day(*args, _exc=exc, **kwargs):
            raise _exc

        monkeypatch.setattr(local_airflow, "run_day", run_day)
        with pytest.raises(type(exc)):
            cli._one_day(2, days, days[1], dag, None, False, [])
        assert capsys.readouterr().out == "[2/3] 2021-02-11 ... stopped\n"

    class ClosedOnceRunning(io.StringIO):
        closed_now = False

        def write(self, text):
            if self.closed_now:
                raise BrokenPipeError(32, "Broken pipe")
            return super().write(text)

    out = ClosedOnceRunning()

    def run_day(*args, **kwargs):
        out.closed_now = True
        raise local_airflow.RunDidNothingError("run manual__x ended 'running'")

    monkeypatch.setattr(local_airflow, "run_day", run_day)
    monkeypatch.setattr(sys, "stdout", out)
    with pytest.raises(local_airflow.RunDidNothingError):
        cli._one_day(1, days, days[0], dag, None, False, [])
    assert out.getvalue() == "[1/3] 2021-02-10 ..."
    monkeypatch.undo()

    # The same with Airflow's log in a file and the terminal a pipe whose reader left (review: the line it did not
    # take was flushed again when the command's writer closed, and that closed pipe replaced the day's error).
    read_end, write_end = os.pipe()
    taken = []

    def reader_leaves_while_it_runs(*args, **kwargs):
        taken.append(os.read(read_end, 100))
        os.close(read_end)
        raise local_airflow.RunDidNothingError("run manual__x ended 'running'")

    monkeypatch.setattr(local_airflow, "refuse_beside_a_scheduler", lambda dag_id: None)
    monkeypatch.setattr(local_airflow, "run_day", reader_leaves_while_it_runs)
    saved = os.dup(1)
    try:
        os.dup2(write_end, 1)
        os.close(write_end)
        with pytest.raises(local_airflow.RunDidNothingError):
            cli._one_day(1, days, days[0], dag, tmp_path / "run.log", False, [])
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    assert taken == [b"[1/3] 2021-02-10 ..."]


def test_a_failed_tasks_error_that_cannot_be_read_says_why_not_that_the_warehouse_did_not_answer(monkeypatch):
    """Review: a role without usage on greenery_audit ran a day that failed; the command said "the warehouse did not
    answer (permission denied for schema greenery_audit)", sending the user to look for a network problem."""
    from psycopg import errors

    from greenery import warehouse

    def refused(*args, **kwargs):
        raise errors.InsufficientPrivilege("permission denied for schema greenery_audit")

    monkeypatch.setattr(warehouse, "connect", refused)
    run = types.SimpleNamespace(run_id="manual__x")
    [(task, lines)] = run_outcome.failures(run, ["check_source_freshness"])
    assert task == "check_source_freshness" and lines == [
        "the tasks' errors could not be read: this role may not read them (permission denied for schema"
        " greenery_audit); the log has them"
    ]


def test_a_refused_login_is_not_called_a_warehouse_that_did_not_answer(monkeypatch):
    from greenery import warehouse

    def refused(*args, **kwargs):
        raise warehouse.WarehouseUnavailableError(
            "cannot connect to the warehouse through Airflow connection 'greenery_warehouse': OperationalError:"
            ' connection failed: FATAL: role "no_such_role" does not exist'
        )

    monkeypatch.setattr(warehouse, "connect", refused)
    [(_, [line])] = run_outcome.failures(types.SimpleNamespace(run_id="manual__x"), ["check_source_freshness"])
    assert line.startswith("the tasks' errors could not be read: the warehouse refused this command's login (")


def test_yesterday_may_be_run_and_today_may_not():
    """Review: today ran, and published the day's first hours as the whole day; tomorrow was already refused."""
    from greenery import cli_types

    today = dt.datetime.now(dt.UTC).date()
    yesterday = today - dt.timedelta(days=1)
    assert cli_types.days_to_run(yesterday, None) == [yesterday]
    with pytest.raises(cli_types.UsageError, match=f"{today} is today \\(UTC\\), not over yet"):
        cli_types.days_to_run(yesterday, today)
    with pytest.raises(cli_types.UsageError, match="is after today"):
        cli_types.days_to_run(today, today + dt.timedelta(days=1))


def test_a_day_whose_run_ended_with_tasks_unfinished_is_failed_and_paged_while_still_its_own(airflow_dag, monkeypatch):
    """Review: `greenery run` checked that every task had finished only after the run was no longer listed as its
    own: a run that ended with a task unfinished was left *running*, unlisted, nobody paged. The check is made while
    the run is listed (local_airflow.run_day's must_finish): the run is failed and on-call paged once."""
    import types

    from greenery.dev import cli_runs, local_airflow

    unfinished = types.SimpleNamespace(
        run_id="manual__x",
        state="running",
        get_task_instances=lambda: [types.SimpleNamespace(task_id="publish", state="running")],
    )
    dag = types.SimpleNamespace(dag_id=config.DAG_ID, task_ids=["publish", "validate"], test=lambda **_: unfinished)
    failed, pages = [], []
    monkeypatch.setattr(
        cli_runs, "fail_run", lambda dag_id, when, started=None: failed.append(when.date()) or "manual__x"
    )
    monkeypatch.setattr(cli_runs, "_page", lambda dag_id, day, run_id, went_out, what: pages.append(what))
    monkeypatch.setattr(cli_runs, "published", lambda run_id: False)
    with pytest.raises(local_airflow.RunDidNothingError) as nothing_finished:
        local_airflow.run_day(dt.date(2021, 2, 12), dag=dag, must_finish=True)
    assert not nothing_finished.value.ran_in_part  # no task of it finished: the range lists the day as not run
    why = "without running every task (no task instance: validate; unfinished: publish"
    assert failed == [dt.date(2021, 2, 12)]
    assert pages == [f"greenery run failed at 2021-02-12: RunDidNothingError: run manual__x ended 'running' {why})"]
    assert local_airflow.run_day(dt.date(2021, 2, 12), dag=dag) is unfinished  # the tests' own runs: not checked
    validated = types.SimpleNamespace(task_id="validate", state="success")
    part = types.SimpleNamespace(
        **{**vars(unfinished), "get_task_instances": lambda: [validated, *unfinished.get_task_instances()]}
    )
    with pytest.raises(local_airflow.RunDidNothingError) as some_finished:
        local_airflow.check_ran(dag, part)
    assert some_finished.value.ran_in_part  # the range says the day ran in part
