"""A private PostgreSQL server from the ``pgserver`` wheel, for the demo, the CLI and the tests.

It listens on a unix socket in its data directory (elsewhere when that path is too long for one). A command
that starts it stops it when it ends, unless ``greenery db start`` asked to keep it running (a marker file
beside the data directory, which initdb wants empty): then it stays up for psql, notebooks or BI tools until
``greenery db stop``.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import functools
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psutil

from greenery.warehouse import create_database

KEEP_RUNNING = ".keep-running"


@dataclass
class EmbeddedPostgres:
    """A private PostgreSQL server: no Docker, no system packages."""

    data_dir: Path
    cleanup: str | None = "stop"

    def __post_init__(self) -> None:
        import pgserver  # a heavy import only needed when no warehouse is configured

        # Absolute: the URL names the socket's folder, and libpq takes a relative one for a host name.
        self.data_dir = _absolute(self.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        _check_reachable_when_root(self.data_dir)
        _server_user_made()
        _forget_dead_handles(self.data_dir)
        # A stale postmaster.pid naming a live process: pgserver would take that process for the server, and
        # stop it (pg_ctl, then SIGTERM/SIGKILL) when this command ends. running_pid removes such a file.
        starting = running_pid(self.data_dir) is None  # else running already (db stop): used as is
        if starting:
            _check_shell_safe(self.data_dir)
            _in_a_session_of_their_own()
        try:
            self._server = pgserver.get_server(self.data_dir, cleanup_mode=self.cleanup)
        except BaseException:
            # pg_ctl stopped half-way (a signal to the whole process group: a closed terminal, `timeout`) may have
            # launched a server pgserver never recorded, which no exit hook would stop (review).
            if starting and (pid := running_pid(self.data_dir)) is not None:
                _stop_postmaster(self.data_dir, pid)
            raise
        # atexit runs its hooks last registered first: this one before pgserver's, which would stop the server.
        atexit.register(self._honour_keep)

    def _honour_keep(self) -> None:
        """Leave the server running when this process ends if ``greenery db start`` asked so after this process
        started it: pgserver stops it with its last handle, as this handle's cleanup mode says."""
        if kept_running(self.data_dir):
            self._server.cleanup_mode = None

    def url(self, database: str = "postgres") -> str:
        # The socket is in the data directory unless that path is too long for a unix socket (107 bytes):
        # pgserver then puts it in its runtime folder, and postmaster.pid says where.
        socket_dir = self._server.get_postmaster_info().socket_dir or self.data_dir
        return f"postgresql://postgres:@/{database}?host={quote(str(socket_dir), safe='/')}"

    def create_database(self, name: str) -> str:
        return create_database(self.url(), name)

    def stop(self, discard: bool = False) -> None:
        """Stop the server. ``discard``: its data is deleted next, so it stops at once, without the shutdown
        checkpoint (PostgreSQL's immediate shutdown): writing out a test session's buffers took 4-9 s."""
        if discard and (pid := running_pid(self.data_dir)) is not None:
            _stop_postmaster(self.data_dir, pid, signal.SIGQUIT)
            # Stopped: pgserver would find the exited postmaster not yet reaped, try pg_ctl and wait 2 s to kill it.
            self._server.cleanup_mode = None
        self._honour_keep()
        self._server.cleanup()

    def unkeep(self) -> None:
        """Undo :func:`start_kept`: not kept any more, and stopped with this handle if it is the last."""
        _marker(self.data_dir).unlink(missing_ok=True)
        self._server.cleanup_mode = "stop"
        self._server.cleanup()


def _in_a_session_of_their_own() -> None:
    """pgserver runs initdb and pg_ctl in the command's process group: a terminal's Ctrl-C or hang-up (sent to the whole
    group) killed them half-way. initdb left a folder with a PG_VERSION, so pgserver never ran initdb again and every
    later command failed ('database "postgres" does not exist'); pg_ctl left pgserver's error log on the terminal. In a
    session of their own they finish, and the command's deferred stop (dev/stop_signals.py) comes after them; the
    server pg_ctl starts is out of the terminal's reach too, and stopped by the command's exit hooks."""
    from pgserver import postgres_server

    if postgres_server.initdb is not _initdb:
        postgres_server.initdb = _initdb
        postgres_server.pg_ctl = functools.partial(postgres_server.pg_ctl, start_new_session=True)


def _initdb(args: list[str], pgdata: Path, **kwargs) -> str:
    """pgserver's initdb command, in a session of its own, into a folder beside ``pgdata`` renamed to it once whole.

    pgserver runs initdb whenever the folder has no PG_VERSION, which initdb writes first: a folder it left half-made
    never worked again ('database "postgres" does not exist'). Stopped half-way (a second Ctrl-C: a step that hangs),
    initdb is sent SIGINT and its folder removed; killed with the command (kill -9, the OOM killer), its folder is
    left beside the data's, where the next start removes it and makes one anew, under another name (reviews)."""
    from pgserver._commands import POSTGRES_BIN_PATH

    pgdata = Path(pgdata)
    # A name of its own: a killed command's initdb runs on (in its session) and removes its folder when it fails.
    making = pgdata.with_name(f".{pgdata.name}.initdb-{os.getpid()}")
    for left in pgdata.parent.glob(f".{pgdata.name}.initdb-*"):  # killed starts': under pgserver's lock, no command's
        shutil.rmtree(left, ignore_errors=True)
    making.mkdir(mode=0o700)
    owner = pgdata.stat()  # pgserver gave the folder to the server's user (as root, 'pgserver')
    os.chown(making, owner.st_uid, owner.st_gid)
    command = [str(POSTGRES_BIN_PATH / "initdb"), "-D", str(making), *args]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, **kwargs
    )
    try:
        out, err = _output_or_stopped(proc)
        if proc.returncode != 0:
            raise InitdbFailed(proc.returncode, command, out, err, folder=pgdata)
        _rename_into_place(making, pgdata)
    finally:
        shutil.rmtree(making, ignore_errors=True)  # none once renamed; else what a failed or stopped initdb left
    return out


def _output_or_stopped(proc: subprocess.Popen) -> tuple[str, str]:
    """initdb's output once it ends; this process stopped meanwhile, initdb is sent SIGINT (it removes what it made)."""
    try:
        return proc.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.communicate(timeout=60)  # initdb removing what it made: a second or so
        except subprocess.TimeoutExpired:
            proc.kill()
        raise


def _rename_into_place(making: Path, pgdata: Path) -> None:
    try:
        os.rename(making, pgdata)  # onto the empty folder pgserver made: a whole cluster, or none
    except OSError as exc:
        why = f"cannot be replaced by the folder initdb made beside it ({exc.strerror})"
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            why = "it holds files but no database (no PG_VERSION), as a first start stopped half-way by an earlier"
            why += " version left it; remove that folder to start anew"
        raise UnusableFolderError(f"the embedded PostgreSQL cannot use {pgdata}: {why}") from exc


class InitdbFailed(subprocess.CalledProcessError):
    """initdb's exit status and what it said: why the folder could not be made."""

    def __init__(self, *args, folder: Path) -> None:
        super().__init__(*args)
        self.folder = folder

    def __str__(self) -> str:
        said = (self.stderr or self.output or "").strip() or "(it printed nothing)"
        return f"initdb of {self.folder} exited with status {self.returncode}: {said}"


def _stop_postmaster(data_dir: Path, pid: int, how: int = signal.SIGINT) -> None:
    """Stop the server ``pid`` of ``data_dir`` (SIGINT: PostgreSQL's fast shutdown) and wait for it, 30 s at most."""
    os.kill(pid, how)
    deadline = time.monotonic() + 30
    while running_pid(data_dir) is not None and time.monotonic() < deadline:
        time.sleep(0.05)


def _forget_dead_handles(data_dir: Path) -> None:
    """Take the processes that no longer exist off pgserver's list of the server's users.

    pgserver stops the server when the last process on its list ends, and each process takes itself off
    when it exits. One killed (SIGKILL, out of memory) stays on the list for good, and then no later
    command stopped the server: it ran on after every one. Under pgserver's own lock, as it edits the list.
    """
    from pgserver.postgres_server import PostgresServer

    handles = Path(data_dir) / ".handle_pids.json"  # pgserver's list: a JSON array of process ids
    with PostgresServer._lock:
        try:
            pids = json.loads(handles.read_text())
        except (FileNotFoundError, ValueError):
            return
        if not isinstance(pids, list):  # not pgserver's format: its own code decides what to do with it
            return
        alive = [pid for pid in pids if not isinstance(pid, int) or _exists(pid)]
        if alive != pids:
            handles.write_text(json.dumps(alive))


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


class UnusableFolderError(RuntimeError):
    """The embedded PostgreSQL cannot run in the state folder; the message names the folder, why, and what to do."""


# pg_ctl starts the server through /bin/sh: the data directory and the log in double quotes, the socket folder
# (`-k`, from pgserver) unquoted. What the shell reads there otherwise ended every command with pg_ctl's bare
# "returned non-zero exit status 1" and a traceback (review). In double quotes: $ (before a name), ` " \. Unquoted,
# also whitespace, ' and the operators, globs and braces (ASCII only: the shell splits on nothing else).
_EXPANDED_IN_QUOTES = re.compile(r'\$[A-Za-z0-9_{(@*#?$!-]|[`"\\]')
# A glob expands when it matches a folder (review: g[1] started its server on g1's socket folder), a brace where
# /bin/sh is bash.
_SPLIT_UNQUOTED = re.compile(r"[ \t\n\r\v\f';&|<>()*?\[{]")


def _check_shell_safe(data_dir: Path) -> None:
    """Refuse a data directory pgserver could not start its server in, naming the characters and why. The socket
    is in the data directory unless that path is too long for one (then in pgserver's runtime folder)."""
    from pgserver.utils import socket_name_length_ok

    found = _EXPANDED_IN_QUOTES.findall(str(data_dir))
    if socket_name_length_ok(data_dir / ".s.PGSQL.5432"):
        found += _SPLIT_UNQUOTED.findall(str(data_dir))
    if found:
        raise UnusableFolderError(
            f"the embedded PostgreSQL cannot use {data_dir}: its path has {', '.join(map(repr, sorted(set(found))))},"
            " which pg_ctl passes to the server through a shell (it would not start); set GREENERY_STATE_DIR"
            " to a folder whose path has none, or use a warehouse of your own (AIRFLOW_CONN_GREENERY_WAREHOUSE)"
        )


def _server_user_made(name: str = "pgserver") -> None:
    """As root, pgserver runs PostgreSQL as the user ``pgserver``, which it makes with useradd when missing, outside
    any lock. Three processes starting their first server at once (the suite's workers on a new machine) each ran
    useradd and each got another uid; the last one's /etc/passwd stayed, and the others' folders, given to uids that
    no longer existed, failed initdb ('could not change permissions of directory ...: Operation not permitted').
    Made here under pgserver's own lock, which every process of the machine takes, and looked up again once held."""
    if os.geteuid() != 0:
        return
    from pgserver.postgres_server import PostgresServer
    from pgserver.utils import ensure_user_exists

    with PostgresServer._lock:
        ensure_user_exists(name)


def _check_reachable_when_root(data_dir: Path) -> None:
    """PostgreSQL refuses to run as root, so as root pgserver runs it as its own user ``pgserver``, which must
    be able to enter every folder above the data directory (initdb otherwise fails with a bare
    'could not change permissions'). Say which folder stops it, before pgserver tries."""
    if os.geteuid() != 0:
        return
    closed = next(((p, mode) for p in data_dir.resolve().parents if not (mode := p.stat().st_mode) & 0o001), None)
    if closed:
        folder, mode = closed
        raise UnusableFolderError(
            f"the embedded PostgreSQL cannot use {data_dir}: running as root, it runs as the user 'pgserver', "
            f"which cannot enter {folder} (mode {mode & 0o777:o}); run as another user, "
            f"allow others to enter that folder (chmod o+x), or set GREENERY_STATE_DIR to a folder they can enter"
        )


def traversable_tempdir(prefix: str, parent: Path | None = None) -> Path:
    """A new temporary folder (in ``parent``, else the system's) the embedded PostgreSQL can use even when
    running as root (mode 711, not 700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    path.chmod(0o711)
    return path


def _absolute(data_dir: Path | str) -> Path:
    return Path(data_dir).resolve()


def _marker(data_dir: Path) -> Path:
    data_dir = _absolute(data_dir)
    return data_dir.with_name(data_dir.name + KEEP_RUNNING)


def kept_running(data_dir: Path) -> bool:
    return _marker(data_dir).exists()


def open_server(data_dir: Path) -> EmbeddedPostgres:
    """The server for one command: stopped when the command ends, unless it is kept running then (_honour_keep).
    Not decided as it starts (review: read kept, then `greenery db stop` stopped the server before this command
    registered; the command started it anew, never to stop it, though `db stop` had said "stopped")."""
    return EmbeddedPostgres(data_dir, cleanup="stop")


def start_kept(data_dir: Path) -> EmbeddedPostgres:
    """Start the server (or find it running) and leave it running after this process."""
    server = EmbeddedPostgres(data_dir, cleanup=None)
    _marker(data_dir).touch()
    return server


def running_pid(data_dir: Path) -> int | None:
    """The postmaster's pid when the server of ``data_dir`` runs, else None. A postmaster.pid whose process is
    not that server (a postmaster killed, or a machine restarted, and its pid reused) is removed."""
    pid_file = _absolute(data_dir) / "postmaster.pid"
    try:
        text = pid_file.read_text()
        pid = int(text.splitlines()[0])
    # FileNotFoundError: not running, or the server removed the file as it stopped, between a check for it and the
    # read that followed (seen once: the test session's stop failed its teardown with it). ValueError, IndexError:
    # a postmaster creating it, not yet written; left alone.
    except (FileNotFoundError, ValueError, IndexError):
        return None
    if pid <= 0:  # a standalone backend's (initdb's, or `postgres --single`): no server; PostgreSQL knows the file
        return None
    if _is_postmaster_of(pid, pid_file.parent):
        return pid
    _remove_stale(pid_file, text)
    return None


def _is_postmaster_of(pid: int, data_dir: Path) -> bool:
    """Whether process ``pid`` is a live PostgreSQL server of ``data_dir``: a process of that name whose working
    folder is the data directory (the postmaster changes to it before it writes postmaster.pid)."""
    try:
        process = psutil.Process(pid)
        if process.name() not in ("postgres", "postmaster") or process.status() == psutil.STATUS_ZOMBIE:
            return False
        try:
            return _same_dir(process.cwd(), data_dir)
        except psutil.AccessDenied:  # another user's (root without CAP_SYS_PTRACE): its command line is public
            args = process.cmdline()
            return any(flag == "-D" and _same_dir(value, data_dir) for flag, value in itertools.pairwise(args))
    except psutil.Error:  # gone, a zombie, or not to be looked at: not known to be the server, never signalled
        return False


def _same_dir(path: str, data_dir: Path) -> bool:
    try:
        return os.path.samefile(path, data_dir)
    except OSError:
        return False


def _remove_stale(pid_file: Path, seen: str) -> None:
    """Remove a postmaster.pid naming no server of its data directory, as PostgreSQL does when its process is gone
    (it refuses to start while that pid is alive, whatever the process). Under pgserver's lock, which it holds
    while it starts a server, and only if unchanged since read: a server that started meanwhile keeps its file."""
    from pgserver.postgres_server import PostgresServer

    with PostgresServer._lock:
        try:
            if pid_file.read_text() == seen:
                pid_file.unlink()
        except FileNotFoundError:
            pass


class ServerInUseError(RuntimeError):
    """``greenery db stop`` found the server still used by another command: nothing was stopped."""


def stop_kept(data_dir: Path) -> bool:
    """Stop the server if it runs; return whether it was running. pgserver stops a server with its last
    handle only: while another command holds one, raise ServerInUseError and leave the server as it was."""
    kept = kept_running(data_dir)
    _marker(data_dir).unlink(missing_ok=True)
    if running_pid(data_dir) is None:
        return False
    EmbeddedPostgres(data_dir, cleanup="stop").stop()  # the last handle stops it
    if (pid := running_pid(data_dir)) is None:
        return True
    if kept:  # a kept server's other users leave it running when they end: keep saying so
        _marker(data_dir).touch()
    raise ServerInUseError(
        f"{data_dir}: the server (pid {pid}) is still used by another greenery command (ui, run, db psql...);"
        " nothing was stopped: "
        + ("end that command, then run `greenery db stop` again" if kept else "it stops when that command ends")
    )
