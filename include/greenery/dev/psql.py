"""psql on the embedded PostgreSQL (``greenery db psql``): the server's own psql, Ctrl-C its own while it runs."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path


def psql_path() -> str:
    """pgserver's own psql (the machine's may be older than the server), else the one on PATH."""
    import pgserver

    bundled = Path(pgserver.__file__).parent / "pginstall" / "bin" / "psql"
    return str(bundled) if bundled.is_file() else (shutil.which("psql") or "psql")


# Where psql connects: the embedded server's URL says it. Given too, psql took the URL for a user name and connected
# to the machine's default server (or PGHOST's), not the embedded one (review).
ELSEWHERE_SHORT, ELSEWHERE_LONG = "dhpU", ("dbname", "host", "port", "username")
TAKES_A_VALUE = "cdfFhLoPpRTUv"  # psql's short options that take one (the rest of the word, or the next word)


def elsewhere(args: list[str]) -> list[str]:
    """The options of ``args`` that name another database, host, port or user, as psql's getopt reads them: short
    options bundled (``-Xd db``), long ones abbreviated (``--db=x``: any prefix getopt takes); values skipped."""
    found, i = [], 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            break
        if arg.startswith("--") and len(arg) > 2:
            name = arg[2:].split("=", 1)[0]
            if any(long.startswith(name) for long in ELSEWHERE_LONG):
                found.append(arg)
        elif arg.startswith("-") and len(arg) > 1:
            for at, letter in enumerate(arg[1:], 1):
                if letter in ELSEWHERE_SHORT:
                    found.append(arg)
                    break
                if letter in TAKES_A_VALUE:
                    i += at == len(arg) - 1  # its value is the next word
                    break
        i += 1
    return found


def run(url: str, args: list[str]) -> int:
    """Run psql on ``url``; its exit status. Ctrl-C is psql's while it runs: it cancels the query and the session
    goes on, as in a shell (review: SIGINT also reached this process, whose KeyboardInterrupt killed psql)."""
    from greenery.cli_types import UsageError

    if where := elsewhere(args):
        raise UsageError(
            f"greenery db psql connects to the embedded server itself: {' '.join(where)} would send psql elsewhere;"
            " for another server run psql there"
        )
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # before psql starts: no Ctrl-C may orphan it
    proc = None
    try:
        proc = subprocess.Popen(
            [psql_path(), url, *args], preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)
        )
        if (code := proc.wait()) < 0:  # killed: a shell's 128 + the signal, not -9 taken modulo 256 (247)
            name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
            print(f"psql was stopped by {name}", file=sys.stderr)
            return 128 - code
        return code
    except BaseException:  # this command stopped (SIGTERM, SIGHUP): psql, on its terminal, is stopped with it (review)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
