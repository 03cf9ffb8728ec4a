"""SIGTERM stops `greenery run`'s day as Ctrl-C does, though Airflow's task runner sets its own SIGTERM handler at
each task (review: `kill` or `timeout` did not stop a run; the handler Airflow leaves only calls `on_kill`). The
end-to-end run is in test_cli (`test_a_run_stopped_by_ctrl_c_or_killed...`); here the mechanism, in a process of
its own, without Airflow."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

CHILD = """
import datetime as dt, os, signal, time
from greenery.dev import cli_runs

@cli_runs.sigterm_stops_the_day()
def a_day(where):
    # What Airflow's task runner does at the start of each task, and never undoes.
    signal.signal(signal.SIGTERM, lambda *_: print("on_kill only", flush=True))
    print(where, flush=True)
    time.sleep(60)  # a blocking call, as a query is

try:
    a_day("inside a task")
except KeyboardInterrupt:
    stopped = cli_runs.interrupted(dt.date(2021, 2, 12), "manual__x")
    print(f"stopped: {stopped} {stopped.exit_status}", flush=True)
assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, signal.getsignal(signal.SIGTERM)
assert signal.getsignal(signal.SIGUSR2) is signal.SIG_DFL
assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])
print("after the days", flush=True)
time.sleep(60)
print("SIGTERM after the days was ignored", flush=True)
"""


def _wait_for(proc: subprocess.Popen, line: str) -> None:
    got = proc.stdout.readline().strip()
    assert got == line, (got, proc.stdout.read() if proc.poll() is not None else "")


@pytest.mark.timeout(60)
def test_sigterm_inside_a_task_stops_the_day_with_143_and_leaves_sigterm_as_it_was():
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(proc, "inside a task")
        proc.send_signal(signal.SIGTERM)
        _wait_for(proc, "stopped: terminated (SIGTERM) at 2021-02-12: its run manual__x failed 143")
        _wait_for(proc, "after the days")
        # Outside the days SIGTERM is the default again: it ends the process (not the task's leftover handler).
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGTERM, (out, err)
        assert "on_kill only" not in out and "ignored" not in out, out
    finally:
        proc.kill()
        proc.wait()


def test_a_day_left_normally_leaves_no_thread_and_ctrl_c_keeps_its_wording():
    import datetime as dt
    import threading

    from greenery.dev import cli_runs

    before = set(threading.enumerate())
    cli_runs.sigterm_stops_the_day()(lambda: None)()
    assert set(threading.enumerate()) == before
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    stopped = cli_runs.interrupted(dt.date(2021, 2, 12), "manual__x")
    assert (str(stopped), stopped.exit_status) == ("interrupted (Ctrl-C) at 2021-02-12: its run manual__x failed", 130)


STOPPED_AND_CONTINUED = """
import time
from greenery.dev import cli_runs

@cli_runs.sigterm_stops_the_day()
def a_day():
    print("inside a task", flush=True)
    time.sleep(3)

try:
    a_day()
    print("the day ended", flush=True)
except KeyboardInterrupt:
    print("stopped with no SIGTERM sent", flush=True)
"""


@pytest.mark.timeout(60)
def test_ctrl_z_then_fg_is_not_taken_for_sigterm():
    """A stopped and continued process gets EINTR from `sigtimedwait` (signal(7)), and CPython 3.11 then returns an
    uninitialized siginfo, not None, once the timeout has passed: the waiting thread took that for SIGTERM (review:
    Ctrl-Z then `fg`, or `py-spy record --pid`, made `greenery run` stop with "terminated (SIGTERM)" and page)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", STOPPED_AND_CONTINUED], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_for(proc, "inside a task")
        for _ in range(3):
            proc.send_signal(signal.SIGSTOP)
            time.sleep(0.4)  # longer than the thread's wait
            proc.send_signal(signal.SIGCONT)
            time.sleep(0.1)
        out, err = proc.communicate(timeout=30)
        assert (out, proc.returncode) == ("the day ended\n", 0), (out, err)
    finally:
        proc.kill()
        proc.wait()
