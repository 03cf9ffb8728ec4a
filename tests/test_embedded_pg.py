"""The embedded PostgreSQL (greenery.dev.embedded_pg) through `greenery db`, a subprocess per command, as a user
runs it: what a stale postmaster.pid, an odd state folder or a second command must not break (review findings)."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import pty
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote

import psutil
import psycopg
import pytest

from greenery.dev import embedded_pg, local_airflow, psql

pytestmark = pytest.mark.db


def db_env(state: Path | str, airflow_home: Path) -> dict:
    env = {**os.environ, "GREENERY_STATE_DIR": str(state), "AIRFLOW_HOME": str(airflow_home)}
    env.pop("AIRFLOW_CONN_GREENERY_WAREHOUSE", None)
    return env


def db(*args: str, env: dict, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "greenery.cli", "db", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


def printed_url(started: subprocess.CompletedProcess) -> str:
    return re.search(r"postgresql://\S+", started.stdout).group(0)


def saved_pid_file(data_dir: Path, env: dict) -> str:
    """A real postmaster.pid of ``data_dir``'s server, as it was while the server ran (it is stopped after)."""
    assert db("start", env=env).returncode == 0
    try:
        return (data_dir / "postmaster.pid").read_text()
    finally:
        assert db("stop", env=env).stdout.strip() == "stopped"


@pytest.mark.parametrize("owner", ["an unrelated process", "another data directory's server"])
def test_a_stale_pid_file_naming_a_live_process_is_neither_reported_nor_signalled(pg_tmp_path, owner):
    """A postmaster killed (or a machine restarted) leaves its postmaster.pid, and its pid may now be another
    process's. Review: `db status` said "running, pid N", and `db stop` (or any command starting the server) had
    pgserver run pg_ctl stop, then terminate and kill that process. Another server's postmaster is a `postgres`
    process too: the name alone does not make it this data directory's."""
    env = db_env(pg_tmp_path / "state", pg_tmp_path / "airflow")
    data_dir = pg_tmp_path / "state" / "pg"
    saved = saved_pid_file(data_dir, env)
    other = None
    if owner == "an unrelated process":
        bystander = psutil.Popen(["sleep", "600"])
    else:
        other = embedded_pg.EmbeddedPostgres(pg_tmp_path / "other")
        bystander = psutil.Process(embedded_pg.running_pid(other.data_dir))

    def leave_stale_pid_file() -> None:
        (data_dir / "postmaster.pid").write_text(re.sub(r"\A\d+", str(bystander.pid), saved))

    try:
        leave_stale_pid_file()
        status = db("status", env=env)
        assert (status.returncode, status.stdout) == (1, f"not running: {data_dir}\n"), status
        assert not (data_dir / "postmaster.pid").exists()  # stale: removed, as PostgreSQL does with a dead pid's

        leave_stale_pid_file()
        assert db("stop", env=env).stdout.strip() == "not running"
        assert bystander.is_running() and bystander.status() != psutil.STATUS_ZOMBIE

        leave_stale_pid_file()
        started = db("start", env=env)  # pgserver would have taken the bystander for the running server
        assert started.returncode == 0, started
        with psycopg.connect(printed_url(started)) as conn:
            assert conn.execute("select current_setting('data_directory')").fetchone() == (str(data_dir),)
        status = db("status", env=env)
        assert status.returncode == 0 and f"pid {bystander.pid}" not in status.stdout, status
        assert db("stop", env=env).stdout.strip() == "stopped"
        assert bystander.is_running() and bystander.status() != psutil.STATUS_ZOMBIE
        if other is not None:
            with psycopg.connect(other.url()) as conn:
                assert conn.execute("select 1").fetchone() == (1,)
    finally:
        db("stop", env=env)
        if other is not None:
            other.stop(discard=True)
        else:
            bystander.kill()
            bystander.wait(timeout=30)


def test_a_server_is_known_by_its_command_line_when_its_folder_cannot_be_read(pg_tmp_path, monkeypatch):
    """Root without CAP_SYS_PTRACE (a container's default) may not read the working folder of the server, which
    runs as the user 'pgserver': the data directory its command line names decides then."""
    server = embedded_pg.EmbeddedPostgres(pg_tmp_path / "pg")
    try:
        pid = embedded_pg.running_pid(server.data_dir)
        pid_file = (server.data_dir / "postmaster.pid").read_text()

        def denied(process):
            raise psutil.AccessDenied(process.pid)

        monkeypatch.setattr(psutil.Process, "cwd", denied)
        assert embedded_pg.running_pid(server.data_dir) == pid
        elsewhere = pg_tmp_path / "elsewhere"
        elsewhere.mkdir()
        (elsewhere / "postmaster.pid").write_text(pid_file)  # the same server, named by another folder's file
        assert embedded_pg.running_pid(elsewhere) is None
        assert not (elsewhere / "postmaster.pid").exists()
    finally:
        server.stop(discard=True)


@pytest.mark.parametrize("state", ["relative", "long, with a space"])
def test_the_server_is_reachable_whatever_the_state_folder(pg_tmp_path, state):
    """Review: the URL named the data directory as given: a relative one is a host name to libpq ("failed to resolve
    host 's2/pg'"), and past 107 bytes a unix socket cannot be there, so pgserver puts it in its runtime folder
    (where a space in the state folder's path does not reach the server's shell-quoted socket option)."""
    if state == "relative":
        env, data_dir = db_env("s2", pg_tmp_path / "airflow"), pg_tmp_path / "s2" / "pg"
    else:
        long = pg_tmp_path / ("x" * 50 + " " + "y" * 49)
        env, data_dir = db_env(long, pg_tmp_path / "airflow"), long / "pg"
        assert len(os.fsencode(data_dir / ".s.PGSQL.5432")) > 107  # the positive control: no socket fits there
    try:
        started = db("start", env=env, cwd=pg_tmp_path)
        assert started.returncode == 0, started
        url = printed_url(started)
        socket_dir = Path(unquote(re.search(r"\?host=(\S+)", url).group(1)))
        assert socket_dir.is_absolute() and (socket_dir / ".s.PGSQL.5432").is_socket(), url
        with psycopg.connect(url) as conn:
            assert conn.execute("select current_setting('data_directory')").fetchone() == (str(data_dir),)
        psql = db("psql", "-X", "-A", "-t", "-c", "select 40 + 2", env=env, cwd=pg_tmp_path)
        assert (psql.returncode, psql.stdout.strip()) == (0, "42"), psql
    finally:
        stopped = db("stop", env=env, cwd=pg_tmp_path)
    assert stopped.stdout.strip() == "stopped", stopped
    assert embedded_pg.running_pid(data_dir) is None


def test_a_state_folder_the_server_cannot_start_in_is_one_line_naming_it(pg_tmp_path):
    """Review: a space (or a shell character) in a short state folder's path reached pg_ctl's shell unquoted (through
    pgserver), and every command ended with a traceback ending in "pg_ctl ... returned non-zero exit status 1"."""
    env = db_env(pg_tmp_path / "my state", pg_tmp_path / "airflow")
    started = db("start", env=env)
    assert (started.returncode, started.stdout) == (2, ""), started
    assert started.stderr.splitlines() == [
        f"error: the embedded PostgreSQL cannot use {pg_tmp_path / 'my state' / 'pg'}: its path has ' ', which pg_ctl"
        " passes to the server through a shell (it would not start); set GREENERY_STATE_DIR to a folder"
        " whose path has none, or use a warehouse of your own (AIRFLOW_CONN_GREENERY_WAREHOUSE)"
    ], started.stderr
    assert not (pg_tmp_path / "my state" / "pg" / "PG_VERSION").exists()


@pytest.mark.parametrize(
    ("name", "refused"),
    [
        # Unquoted, a glob matching another folder started the server on that folder's socket (review).
        ("g[1]", ["'['"]),
        ("st*r", ["'*'"]),
        ("x{a,b}", ["'{'"]),  # two words where /bin/sh is bash
        ("d$", []),  # a $ before / is no expansion
        ("nb\u00a0sp", []),  # the shell splits on ASCII whitespace only
        ("my state", ["' '"]),
        ("a;b", ["';'"]),
        ("$HOME", ["'$H'"]),
        ('a"b', ["'\"'"]),
    ],
)
def test_only_what_the_shell_would_read_otherwise_is_refused(pg_tmp_path, name, refused):
    """The characters that reach pg_ctl's shell: in double quotes (the data directory, the log) always; unquoted
    (the socket option) only when the socket is in the data directory, i.e. when the path is short enough."""
    short, long = pg_tmp_path / name / "pg", pg_tmp_path / ("x" * 100) / name / "pg"
    for data_dir, expected in ((short, refused), (long, [r for r in refused if r in ("'$H'", "'\"'")])):
        data_dir.mkdir(parents=True)
        if expected:
            with pytest.raises(embedded_pg.UnusableFolderError) as error:
                embedded_pg._check_shell_safe(data_dir)
            assert f"its path has {', '.join(expected)}, which pg_ctl" in str(error.value)
        else:
            embedded_pg._check_shell_safe(data_dir)


def test_a_command_that_opened_a_kept_server_stops_it_if_db_stop_unkept_it_meanwhile(pg_tmp_path):
    """Review: a command decided as it started that a kept server was to stay up; `greenery db stop` then said
    "stopped" (and, racing, stopped it before the command registered, which started it anew): the server ran on,
    nobody's. Whether it stays up is decided when the command ends."""
    env, data_dir = db_env(pg_tmp_path / "state", pg_tmp_path / "airflow"), pg_tmp_path / "state" / "pg"
    assert db("start", env=env).returncode == 0
    try:
        server = embedded_pg.open_server(data_dir)  # kept, as this command starts
        embedded_pg._marker(data_dir).unlink()  # what `greenery db stop` does first
        server.stop()  # the command ends: the last user of a server nobody keeps
        assert embedded_pg.running_pid(data_dir) is None
    finally:
        db("stop", env=env)


def test_db_start_keeps_the_server_another_command_started(pg_tmp_path):
    """Review: with `greenery db psql` holding the server it had started, `greenery db start` printed "running until
    `greenery db stop`", yet the server stopped when psql ended (pgserver's cleanup at exit, in the command that
    started it). The README: it stays up "unless `greenery db start` keeps it running (until `greenery db stop`)"."""
    env = db_env(pg_tmp_path / "state", pg_tmp_path / "airflow")
    data_dir = pg_tmp_path / "state" / "pg"
    holder = subprocess.Popen(  # psql reads its queries from stdin: it ends when that closes
        [sys.executable, "-m", "greenery.cli", "db", "psql", "-X", "-A", "-t"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        holder.stdin.write("select 'connected';\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "connected"  # the holder started the server
        pid = embedded_pg.running_pid(data_dir)
        started = db("start", env=env)
        assert started.returncode == 0 and "running until `greenery db stop`" in started.stdout, started
        assert holder.poll() is None  # the holder still holds the server: the case under test
        holder.stdin.close()
        assert holder.wait(timeout=60) == 0, holder.stderr.read()
        status = db("status", env=env)
        assert (status.returncode, status.stdout) == (
            0,
            f"running, pid {pid} (kept running by `greenery db start`): {data_dir}\n",
        ), status
    finally:
        holder.kill()
        holder.wait(timeout=30)
        stopped = db("stop", env=env)
    assert stopped.stdout.strip() == "stopped", stopped  # and `db stop` still stops a kept server
    assert db("status", env=env).returncode == 1


def test_ctrl_c_in_db_psql_cancels_the_query_not_the_command(pg_tmp_path):
    """Review: Ctrl-C (SIGINT to the terminal's foreground group: psql and `greenery` both) raised
    KeyboardInterrupt in `greenery`, which killed psql mid-session with a traceback. Now psql alone acts on it: it
    cancels the query, and the command ends with psql's status, stopping the server it started."""
    env, data_dir = db_env(pg_tmp_path / "state", pg_tmp_path / "airflow"), pg_tmp_path / "state" / "pg"
    # As from a terminal: SIGINT goes to the whole group; Python leaves SIGINT ignored when started with it ignored.
    foreground = "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler);"
    foreground += " sys.argv[0] = 'greenery'; runpy.run_module('greenery.cli', run_name='__main__')"
    proc = subprocess.Popen(
        [sys.executable, "-c", foreground, "db", "psql", "-X", "-c", "select pg_sleep(30)"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    out, err = _signalled_once(proc, lambda: _wait_for_sleep(proc, data_dir), signal.SIGINT, group=True)
    assert "canceling statement due to user request" in err and "Traceback" not in err, err
    assert proc.returncode == 1, (proc.returncode, out, err)  # psql's status for a failed -c command
    assert embedded_pg.running_pid(data_dir) is None  # the server the command started was stopped


def _started(args: list[str], env: dict, terminal: int | None = None, group: bool = False) -> subprocess.Popen:
    """The command, its output piped, or on the pty ``terminal`` (stdin and stdout) but for its errors; ``group``:
    in a process group (and session) of its own."""
    return subprocess.Popen(
        [sys.executable, "-m", "greenery.cli", *args],
        stdin=terminal,
        stdout=subprocess.PIPE if terminal is None else terminal,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "PYTHONUNBUFFERED": "1"},
        start_new_session=group,
        # As a terminal's job: SIGHUP and SIGINT at their defaults, not ignored as under the `nohup ... &` CI runs the
        # suite with (Python then turns SIGINT into KeyboardInterrupt, as it does for Ctrl-C in a terminal).
        preexec_fn=_as_a_terminals_job,
    )


def _as_a_terminals_job() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _signalled_once(proc: subprocess.Popen, ready, signum: int = signal.SIGTERM, group: bool = False):
    """``signum`` to ``proc`` (to its whole process group if ``group``) once ``ready()`` returned; its output,
    (stdout, stderr). Killed, its group too, if anything failed before it ended."""
    send = functools.partial(os.killpg, proc.pid) if group else proc.send_signal
    try:
        ready()
        send(signum)
        return proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            send(signal.SIGKILL)
            proc.wait()


def _wait_for_file(proc: subprocess.Popen, path: Path) -> None:
    _wait_until(proc, path.exists)


def _wait_until(proc: subprocess.Popen, found):
    """What ``found()`` returns once true, within 60 s, while ``proc`` runs."""
    deadline = time.monotonic() + 60
    while not (value := found()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate(timeout=5)
        time.sleep(0.005)
    return value


def _wait_for_line(proc: subprocess.Popen, start: str) -> None:
    for line in proc.stdout:
        if line.startswith(start):
            return
    pytest.fail(f"no line {start!r}: {proc.communicate(timeout=30)}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_stop_signal_outside_a_day_stops_the_server_the_command_started(pg_tmp_path, signum):
    """Review: outside a day's run, SIGTERM (or a closed terminal's SIGHUP) ended a command at once, by the
    signal's default action: the embedded PostgreSQL it had started stayed up, and so did the psql it ran. Now the
    command ends through its exit hooks, with the shell's status for the signal and one line."""
    env, data_dir = db_env(pg_tmp_path / "state", pg_tmp_path / "airflow"), pg_tmp_path / "state" / "pg"
    # An interactive psql, on a terminal: its connection lost with the server, it would wait for its user's input.
    terminal, psql_terminal = pty.openpty()
    proc = _started(["db", "psql", "-X"], env, terminal=psql_terminal)
    os.close(psql_terminal)
    psql = []
    try:
        os.write(terminal, b"select pg_sleep(30);\n")
        _wait_for_sleep(proc, data_dir)
        psql = psutil.Process(proc.pid).children()
        proc.send_signal(signum)
        proc.wait(timeout=60)
        _, alive = psutil.wait_procs(psql, timeout=10)
        assert not alive, "psql was left running"  # review: on its terminal, still connected to a kept server
        err = proc.stderr.read()
    finally:
        for process in [proc, *psql]:
            with contextlib.suppress(psutil.Error, OSError):
                process.kill()
        proc.wait()
        os.close(terminal)
    said = {signal.SIGTERM: "terminated (SIGTERM)", signal.SIGHUP: "hung up (SIGHUP)"}[signum]
    assert (proc.returncode, err.strip().splitlines()[-1:]) == (128 + signum, [f"stopped: {said}"]), err
    assert embedded_pg.running_pid(data_dir) is None  # psql and the server the command started were stopped


def _wait_for_sleep(proc: subprocess.Popen, data_dir: Path) -> None:
    """Until the psql ``proc`` started runs its pg_sleep on the server in ``data_dir``."""
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate(timeout=5)
        if (data_dir / ".s.PGSQL.5432").is_socket():
            try:  # the socket is there before the server takes connections ("starting up")
                with psycopg.connect(f"postgresql://postgres:@/postgres?host={data_dir}", autocommit=True) as conn:
                    sql = "select count(*) from pg_stat_activity where query like 'select pg_sleep%'"
                    if conn.execute(sql).fetchone()[0]:
                        return
            except psycopg.OperationalError:
                pass
        time.sleep(0.2)


@pytest.mark.parametrize("ctrl_c", [False, True], ids=["SIGTERM", "Ctrl-C: SIGINT to the whole group"])
def test_sigterm_while_greenery_run_prepares_pages_once_and_stops_the_server(pg_tmp_path, ctrl_c):
    """Review: SIGTERM before the first day (here while a new Airflow home is migrated, ~6 s) ended `greenery run`
    at once: the embedded server stayed up, and nobody heard of the day that was not built. Now it stops as a
    SIGTERM in a day does: one line, exit 143, one page, and the server it started is stopped. Ctrl-C, which the
    terminal sends to the whole group (`airflow db migrate` included), is the user's own stop: exit 130, no page."""
    from slack_server import FakeSlack

    data_dir = pg_tmp_path / "state" / "pg"
    with FakeSlack() as slack:
        env = {
            **db_env(pg_tmp_path / "state", pg_tmp_path / "airflow"),
            "AIRFLOW_CONN_SLACK_ALERTS": slack.webhook_conn_json(),
        }
        proc = _started(["run", "--date", "2021-02-12"], env, group=ctrl_c)

        def migrating() -> None:  # the new Airflow home's database is being made
            _wait_for_line(proc, "using the embedded PostgreSQL")
            _wait_for_file(proc, pg_tmp_path / "airflow" / "airflow.db")

        out, err = _signalled_once(proc, migrating, signal.SIGINT if ctrl_c else signal.SIGTERM, group=ctrl_c)
        assert "Traceback" not in err, err
        if ctrl_c:
            said = "stopped: interrupted (Ctrl-C) at 2021-02-12: no run of it was left running"
            assert (proc.returncode, err.strip().splitlines()[-1:]) == (130, [said]), err
            assert slack.webhook_posts() == []
        else:
            said = "stopped: terminated (SIGTERM) at 2021-02-12: no run of it was left running; on-call was paged"
            assert proc.returncode == 143 and said in err, (out, err)
            [page] = slack.webhook_posts()
            assert "stopped by SIGTERM" in json.dumps(page.body), page.body
    assert embedded_pg.running_pid(data_dir) is None
    # The migration the signal came in finished first (review: killed half-way, it left a database without tables,
    # and the run the page asks for failed on "no such table: dag").
    assert local_airflow._revision(pg_tmp_path / "airflow" / "airflow.db")


@pytest.mark.parametrize(
    ("signum", "group", "twice", "status", "said"),
    [
        (signal.SIGTERM, False, False, 143, "stopped: terminated (SIGTERM)"),
        (signal.SIGINT, True, False, 130, "stopped: interrupted (Ctrl-C)"),
        (signal.SIGINT, True, True, 130, "stopped: interrupted (Ctrl-C)"),
    ],
    ids=["SIGTERM", "Ctrl-C: SIGINT to the whole group", "Ctrl-C twice: stopped half-way"],
)
def test_a_stop_signal_while_the_server_is_first_made_leaves_a_folder_that_works(
    pg_tmp_path, signum, group, twice, status, said
):
    """Review: SIGTERM in `initdb` killed it half-way (the command's exit killed its child), and the folder's server
    never started again ('database "postgres" does not exist'); in `pg_ctl start`, the server it launched ran on
    unknown to anyone. The signal now waits for the start, then ends the command, which stops what it started (it
    said "running until `greenery db stop`" and was stopped: second review). Ctrl-C reaches the terminal's whole
    process group: initdb itself was killed by it (and the command ended in a traceback, reading the pid file of
    initdb's standalone backend, a negative pid); initdb now runs in a session of its own. A second Ctrl-C stops it
    half-way, as it asks to: initdb is sent SIGINT and removes what it made (killed, it left a folder that never
    worked: third review), so the next command makes the folder anew."""
    env, data_dir = db_env(pg_tmp_path / "state", pg_tmp_path / "airflow"), pg_tmp_path / "state" / "pg"
    proc = _started(["db", "start"], env, group=group)

    def initdb_under_way() -> None:  # initdb writes PG_VERSION first
        _wait_for_initdb(proc, data_dir)
        if twice:
            os.killpg(proc.pid, signal.SIGINT)
            time.sleep(0.05)

    out, err = _signalled_once(proc, initdb_under_way, signum, group)
    assert (proc.returncode, err.strip().splitlines()[-1:]) == (status, [said]), (out, err)
    assert "running until" not in out and embedded_pg.running_pid(data_dir) is None, out
    assert not embedded_pg.kept_running(data_dir)
    psql = db("psql", "-X", "-A", "-t", "-c", "select 40 + 2", env=env)
    assert (psql.returncode, psql.stdout.strip()) == (0, "42"), psql
    assert embedded_pg.running_pid(data_dir) is None


def _wait_for_initdb(proc: subprocess.Popen, data_dir: Path) -> Path:
    """The folder initdb makes beside ``data_dir`` (renamed to it once whole: embedded_pg._initdb), once initdb has
    written its PG_VERSION (its first file)."""
    return _wait_until(proc, lambda: next(data_dir.parent.glob(f".{data_dir.name}.initdb-*/PG_VERSION"), None)).parent


@pytest.mark.parametrize("with_initdb", [True, False], ids=["with its initdb", "its initdb running on"])
def test_a_first_start_killed_leaves_a_folder_the_next_command_makes_anew(pg_tmp_path, with_initdb):
    """Review: kill -9 (the OOM killer) of the command and its initdb left a folder with a PG_VERSION, which pgserver
    takes for a made one: no command ever worked in it again ('database "postgres" does not exist'). Second review:
    killed alone, its initdb (in a session of its own) ran on in the folder the next command made anew, and removed
    that command's files when it failed: the next command ended in a traceback."""
    env, data_dir = db_env(pg_tmp_path / "state", pg_tmp_path / "airflow"), pg_tmp_path / "state" / "pg"
    proc = _started(["db", "start"], env, group=True)
    try:
        making = _wait_for_initdb(proc, data_dir)
        initdb = [p for p in psutil.process_iter(["cmdline"]) if str(making) in (p.info["cmdline"] or [])]
        for victim in [psutil.Process(proc.pid), *(initdb if with_initdb else [])]:
            victim.kill()
    finally:
        proc.kill()
        proc.communicate()
    assert initdb and not (data_dir / "PG_VERSION").exists()
    psql = db("psql", "-X", "-A", "-t", "-c", "select 40 + 2", env=env)
    assert (psql.returncode, psql.stdout.strip()) == (0, "42"), psql
    assert embedded_pg.running_pid(data_dir) is None
    # An initdb running on may make its folder again after the next command removed it: the start after removes it.
    assert not making.exists() or not with_initdb


def test_a_signal_to_the_whole_group_as_the_server_starts_leaves_no_server(pg_tmp_path):
    """Second review: a closed terminal or `timeout` signals the whole process group, pg_ctl included. Killed while
    it waited for the server it launched, pg_ctl left a server pgserver never recorded: no exit hook stopped it."""
    env, data_dir = db_env(pg_tmp_path / "state", pg_tmp_path / "airflow"), pg_tmp_path / "state" / "pg"
    assert db("start", env=env).returncode == 0 and db("stop", env=env).returncode == 0  # made: only a start now
    proc = _started(["db", "psql", "-X", "-c", "select 1"], env, group=True)
    # pg_ctl launched the server and waits for it to be ready.
    out, err = _signalled_once(proc, lambda: _wait_for_file(proc, data_dir / "postmaster.pid"), group=True)
    assert proc.returncode in (0, 143), (out, err)  # 0: the signal came after psql's answer
    assert embedded_pg.running_pid(data_dir) is None, (out, err)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root has the server run as a user of its own (made when missing)")
def test_processes_starting_their_first_servers_at_once_make_one_server_user():
    """Found on a new machine: `make test`'s three workers each made the user 'pgserver' (pgserver's useradd, outside
    its lock); the last /etc/passwd written won, and two workers' servers failed initdb on folders given to uids that
    no longer existed (373 errors). Three processes make a user of this test's own at one instant: one uid for all."""
    name = f"greentest{os.getpid()}"
    at = time.time() + 3  # after the three interpreters' imports
    code = (
        "import sys, time, pwd; from greenery.dev import embedded_pg; at = float(sys.argv[2])\n"
        "while time.time() < at: pass\n"
        "embedded_pg._server_user_made(sys.argv[1]); print(pwd.getpwnam(sys.argv[1]).pw_uid)"
    )
    makers = [
        subprocess.Popen([sys.executable, "-c", code, name, str(at)], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    try:
        seen = [int(proc.communicate(timeout=60)[0]) for proc in makers]
        import pwd

        assert seen == [pwd.getpwnam(name).pw_uid] * 3, seen
    finally:
        subprocess.run(["userdel", name], capture_output=True)


def test_initdb_failing_says_what_initdb_said(tmp_path):
    """The failure above surfaced as "initdb ... returned non-zero exit status 1": what initdb printed was dropped."""
    with pytest.raises(subprocess.CalledProcessError) as failed:
        embedded_pg._initdb(["--no-such-option"], pgdata=(tmp_path / "pg").mkdir() or tmp_path / "pg")
    said = str(failed.value)
    assert said.startswith(f"initdb of {tmp_path / 'pg'} exited with status 1: "), said
    assert "unrecognized option '--no-such-option'" in said, said


def test_db_psql_killed_ends_with_a_shells_status_and_says_so(pg_admin_url, capsys):
    """`greenery db psql` whose psql was killed (kill -9, the OOM killer) exited 247 (-9 modulo 256) without a word;
    a shell says 137 (128 + 9)."""
    import threading

    def kill_psql():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if found := [p for p in psutil.Process().children() if p.name() == "psql"]:
                found[0].send_signal(signal.SIGKILL)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_psql)
    killer.start()
    code = psql.run(pg_admin_url, ["-c", "select pg_sleep(30)"])
    killer.join()
    assert (code, capsys.readouterr().err) == (137, "psql was stopped by SIGKILL\n")


@pytest.mark.parametrize("configured", [True, False])
def test_db_psql_says_it_is_the_embedded_server_when_a_warehouse_is_configured(
    configured, tmp_path, monkeypatch, capsys
):
    """Operator trial: with AIRFLOW_CONN_GREENERY_WAREHOUSE set, `greenery db psql -c 'select * from marts...'`
    opened the embedded server without a word and answered that the marts do not exist."""
    import argparse
    import types

    from greenery.dev import db_command, embedded_pg

    server = types.SimpleNamespace(url=lambda: "postgresql://embedded", stop=lambda: None)
    monkeypatch.setattr(embedded_pg, "open_server", lambda data_dir: server)
    monkeypatch.setattr(psql, "run", lambda url, args: 0)
    monkeypatch.delenv("AIRFLOW_CONN_GREENERY_WAREHOUSE", raising=False)
    if configured:
        monkeypatch.setenv("AIRFLOW_CONN_GREENERY_WAREHOUSE", "postgres://etl@warehouse.internal:5432/analytics")
    assert db_command.run(argparse.Namespace(action="psql", psql_args=["-c", "select 1"]), tmp_path / "pg") == 0
    said = capsys.readouterr().err
    note = (
        f"note: this is the embedded PostgreSQL ({tmp_path / 'pg'}), not the warehouse AIRFLOW_CONN_GREENERY_WAREHOUSE"
    )
    assert said.startswith(note) if configured else said == "", said
