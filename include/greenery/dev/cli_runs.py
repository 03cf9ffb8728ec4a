"""The in-process runs of ``greenery run``: which process owns which, Ctrl-C, and runs left behind.

``dag.test`` runs have no scheduler job, so nothing in Airflow ever fails one whose process is gone (a ``kill -9``,
a closed terminal, Ctrl-C between two tasks): it stayed ``running`` for good, and with ``max_active_runs=1`` every
run the UI's scheduler queued after it waited forever, nobody paged (review). Each process lists the run it is in (a
file per pid in the Airflow home); the next ``greenery run`` or ``greenery ui`` fails the runs of processes gone.

Ctrl-C stops the day: it fails the task it lands in for good (no retry of a ``KeyboardInterrupt``, no page for the
user's own stop), the run ends failed, and the command says where it stopped (exit 130); between two tasks it
reaches this module, which fails the run. SIGTERM (``kill``, ``timeout``, a service manager's stop) does the same,
exit 143, and pages on-call once (from here: nobody may be watching); so does SIGHUP (a closed terminal, an ended
SSH session), exit 129, unless it is ignored (``nohup``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

from greenery.cli_types import span
from greenery.dev.process_identity import alive as _alive
from greenery.dev.process_identity import start_of as _start_of
from greenery.dev.stop_signals import SIGNALS, StopSignal
from greenery.errors import USER_STOPPED

REGISTRY = "greenery-runs"  # in the Airflow home
UNFINISHED = ("running", "queued", "scheduled", "up_for_retry", "up_for_reschedule", "restarting", "deferred")


class RunInterrupted(RuntimeError):
    """The user stopped ``greenery run`` (Ctrl-C or SIGTERM): the day's run was failed, and no later day runs."""

    def __init__(self, message: str, exit_status: int) -> None:
        super().__init__(message)
        self.exit_status = exit_status  # as a shell reports a command its signal ended: 128 + the signal


_terminated = threading.Event()  # the stop came as a signal below, not Ctrl-C
_ctrl_c = [False]  # Ctrl-C came in the days (stop_noted); not an Event: its set() takes a lock, in a handler
_stopped_by = [signal.SIGTERM]  # which one (set before _terminated)
_days_entered = threading.Event()  # sigterm_stops_the_day was entered: its days' stops are its own
_asked: list[list[dt.date]] = [[]]  # the days the command was asked to run


@contextlib.contextmanager
def preparing(dag_id: str, days: list[dt.date]) -> Iterator[None]:
    """While `greenery run` prepares the first of ``days``, up to its run: a stop signal is :func:`stopped` as one
    in a day is (it pages once; no day's run was started). Inside stop_signals.end_the_command."""
    day, _asked[0] = days[0], list(days)
    _days_entered.clear()
    try:
        yield
    except (StopSignal, KeyboardInterrupt) as stop:
        if _days_entered.is_set():  # after the days (as the command ended): nothing to page about
            raise
        if isinstance(stop, StopSignal):  # not Ctrl-C, the user's own stop: no page, it says what became of the day
            _stopped_by[0] = stop.signum
            _terminated.set()
        raise stopped(dag_id, day, None) from None
    finally:  # the asked days are this command's (CI: a range run in-process leaked into the next caller's stop)
        _asked[0] = []


def _registry() -> Path:
    return Path(os.environ["AIRFLOW_HOME"]) / REGISTRY


def interrupted(day: dt.date, run_id: str | None, published: bool = False, became: str | None = None) -> RunInterrupted:
    signum = _stopped_by[0] if _terminated.is_set() else signal.SIGINT
    how = SIGNALS[signum][0] if signum in SIGNALS else "interrupted (Ctrl-C)"
    rest = not_run_after(day, inclusive=run_id is None)
    return RunInterrupted(f"{how} at {day}: {became or _what_became(run_id, published)}{rest}", 128 + signum)


def not_run_after(day: dt.date, inclusive: bool = False) -> str:
    """``"; not run: <the asked days after day (from it: inclusive)>"``; ``""`` for the last or another day (review)."""
    days = _asked[0]
    if day not in days[:-1]:  # the last day (the line said it), or another day's run (one left behind, found)
        return ""
    return f"; not run: {span(days[days.index(day) + (0 if inclusive else 1) :])}"


def run_again(day: dt.date) -> str:
    """The command that runs ``day`` again and the rest of the asked range it stopped in."""
    days = _asked[0]
    return f"greenery run --date {day}" + (f" --end-date {days[-1]}" if day in days[:-1] else "")


def _what_became(run_id: str | None, published: bool) -> str:
    if not run_id:
        return "no run of it was left running"
    if published:
        return f"its run {run_id} failed after its tables WERE published (what follows publish did not all run)"
    return f"its run {run_id} failed"


def published(run_id: str | None) -> bool:
    """Whether run ``run_id`` published before it was stopped (review: a stop after publish committed said, and
    paged, that nothing was published). False when the warehouse cannot tell: then nothing is claimed."""
    if not run_id:
        return False
    from greenery import audit, warehouse

    try:
        with warehouse.connect(connect_timeout=5) as conn:
            conn.execute("set statement_timeout = 5000")
            return audit.run_published_at(conn, run_id) is not None
    except (Exception, KeyboardInterrupt):  # the stop is reported either way (a second Ctrl-C too): not the claim
        return False


def stopped(dag_id: str, day: dt.date, run_id: str | None, ended: str | None = None) -> RunInterrupted:
    """The command's stop at ``day``. Ctrl-C pages nobody (the user is there); SIGTERM or SIGHUP pages on-call once,
    from here (the task it landed in does not page a KeyboardInterrupt): `timeout` or a service manager may have sent
    it, or a closed terminal, with nobody watching (review: a cron job's `timeout` stopped runs in silence).
    ``ended``: the state the day's run ended in although the stop came while it ran (:func:`stop_noted`)."""
    went_out = published(run_id)
    # Diff review: a run that ended failed after its publish had committed lost "WERE published" from the line.
    after = " after its tables WERE published" if went_out and ended != "success" else ""
    became = ended and f"its run {run_id} ended {ended}{after} (the stop came while it ran)"
    stop = interrupted(day, run_id, went_out, became)
    if not _terminated.is_set():
        return stop
    name, why = signal.Signals(_stopped_by[0]).name, SIGNALS[_stopped_by[0]][1]
    said = _page(dag_id, day, run_id, went_out, f"greenery run was stopped by {name} ({why}) at {day}", became)
    return RunInterrupted(f"{stop}; {said}", stop.exit_status)


def _page(dag_id: str, day: dt.date, run_id: str | None, went_out: bool, what: str, became: str | None = None) -> str:
    """Page on-call once that ``what`` ended the day's run (``became``: what became of it, when not failed by the
    stop); return what became of the page, for the user."""
    from greenery import links
    from greenery.alerts import messages
    from greenery.tasks import paging

    rest = ("" if went_out else "; nothing more of the day was published") + not_run_after(day)
    again = f"{run_again(day)} (or trigger it in the UI)"
    payload = messages.build_task_failure_alert(
        dag_id=dag_id,
        task_id="?",
        logical_date=day.isoformat(),
        run_id=run_id or "-",
        error=f"{what}: {became or _what_became(run_id, went_out)}{rest}",
        log_url=None,
        links=links.for_run(run_id) if run_id else None,
        published=went_out,
        next_step=f"In `greenery ui`, clear the tasks of run {run_id} after publish that did not succeed (Grid →"
        " the run → the task → Clear): running the day again would publish and send the digest again."
        + (f" Then run the rest: {run_again(day + dt.timedelta(days=1))}." if not_run_after(day) else "")
        if went_out
        else f"Run the day again: {again}.",
    )
    sent = paging.page(payload)
    said = {paging.SENT: "on-call was paged", paging.MAYBE_SENT: "the page to on-call may have been posted"}
    return said.get(sent, "on-call could not be paged (see the log)")


def _raise_interrupt(signum: int, frame: object) -> None:
    if signum == signal.SIGINT:
        _ctrl_c[0] = True  # noted too: its KeyboardInterrupt may be lost (stop_noted)
    raise KeyboardInterrupt


def stop_noted() -> bool:
    """Whether a stop came in the day's run though the run went on: Python drops an exception raised in a ``__del__``
    or weakref callback, and a signal's landing there, in a collection of GX's objects, was lost (review: Ctrl-C in
    validate, 1 in 14 tries, and the range ran on to exit 0)."""
    return _terminated.is_set() or _ctrl_c[0]


@contextlib.contextmanager
def sigterm_stops_the_day() -> Iterator[None]:
    """Inside, SIGTERM (and SIGHUP) stops the day as Ctrl-C does, and pages (review: SIGTERM did not stop
    ``greenery run`` at all; a closed terminal left its run ``running`` until the next command, paging nobody).

    A handler of ours would not last: Airflow's task runner sets its own for each task, which only calls the
    operator's ``on_kill`` (a worker's supervisor follows it with SIGKILL; here nothing does). So SIGTERM is
    blocked and a thread waits for it, then signals the main thread with SIGUSR2, whose handler raises
    ``KeyboardInterrupt``: a real signal, so a query waiting in psycopg is cancelled as on Ctrl-C. Blocked signals
    are inherited: start no subprocess inside. Call it from the main thread, before starting other threads.
    """
    _terminated.clear()
    _ctrl_c[0] = False
    main = threading.main_thread().ident
    # SIGHUP only where it would end the process: `nohup` (SIG_IGN) asked to run on with no terminal.
    stops = {s for s in SIGNALS if s == signal.SIGTERM or signal.getsignal(s) is not signal.SIG_IGN}
    previous, before = signal.signal(signal.SIGUSR2, _raise_interrupt), {s: signal.getsignal(s) for s in stops}
    # Ctrl-C noted as well as raised, where it raises (not ignored, as under a shell's background job).
    ctrl_c = signal.getsignal(signal.SIGINT)
    if ctrl_c is signal.default_int_handler:
        signal.signal(signal.SIGINT, _raise_interrupt)
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)
    leaving, late, ready, lock = threading.Event(), threading.Event(), threading.Event(), threading.Lock()
    done = False

    # No timeout: CPython 3.11's `sigtimedwait` returns an uninitialized siginfo, not None, when the wait is
    # interrupted as its timeout ends, which every Ctrl-Z then `fg` (or a profiler attaching) does (signal(7)); it
    # was taken for SIGTERM. `sigwaitinfo` is retried on EINTR. Leaving, the main thread wakes it with SIGUSR2 sent
    # to it alone, which it blocks (a process-wide SIGUSR2 still goes to the main thread's handler).
    def wait_for_sigterm() -> None:
        nonlocal done
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
        ready.set()
        info = signal.sigwaitinfo({*stops, signal.SIGUSR2})
        with lock:
            done = True
        if info.si_signo == signal.SIGUSR2:
            return  # leaving
        _stopped_by[0] = info.si_signo
        if leaving.is_set():
            late.set()  # the day was over: delivered again once the signal is back to what it was
        else:
            _terminated.set()
            signal.pthread_kill(main, signal.SIGUSR2)

    waiter = threading.Thread(target=wait_for_sigterm, name="greenery-sigterm", daemon=True)
    waiter.start()
    ready.wait()
    _days_entered.set()
    ending = False
    try:
        yield
    except (KeyboardInterrupt, RunInterrupted):
        ending = True  # stopped: a later stop signal must not replace this stop's line (review), so it is ignored
        raise
    finally:
        leaving.set()
        with lock:
            if not done:  # alive, in its wait or just out of it; a SIGTERM it took first makes it leave `late`
                signal.pthread_kill(waiter.ident, signal.SIGUSR2)
        waiter.join()
        while _terminated.is_set() and (pending := signal.sigpending() & stops):
            # The same stop again (a closed terminal: SIGHUP from the shell, then from the kernel): taken here, or
            # unblocked below it would end the process before its stop line and its exit hooks (review).
            signal.sigwait(pending)
        for signum, handler in before.items():
            # Not the last task's SIGTERM handler, which Airflow leaves set.
            signal.signal(signum, signal.SIG_IGN if ending else handler)
        signal.signal(signal.SIGUSR2, previous)
        if signal.getsignal(signal.SIGINT) is _raise_interrupt:
            signal.signal(signal.SIGINT, ctrl_c)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)  # one still pending is delivered now
        if late.is_set() and not ending:
            signal.raise_signal(_stopped_by[0])


def fail_run(dag_id: str, logical_date: dt.datetime, started: dt.datetime | None = None) -> str | None:
    """Fail the unfinished run of ``logical_date`` and its tasks; its run id (None: none). ``started``: its real start
    (dag.test starts it at its logical date: a stopped run lasted years in the UI)."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select, update

    now = dt.datetime.now(dt.UTC)
    with create_session() as session:
        run = session.scalar(
            select(DagRun).where(
                DagRun.dag_id == dag_id, DagRun.logical_date == logical_date, DagRun.state.in_(("running", "queued"))
            )
        )
        if run is None:
            return None
        session.execute(
            update(TaskInstance)
            .where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run.run_id)
            .where(TaskInstance.state.in_(UNFINISHED))
            .values(state="failed", end_date=now),
            execution_options={"synchronize_session": False},
        )
        run.state, run.end_date = "failed", now
        run.start_date = started or run.start_date
        return run.run_id


def _listed() -> Iterator[tuple[Path, dict, bool]]:
    """Each run a `greenery run` process listed on this Airflow home: (its file, what it lists, whether it lives)."""
    registry = _registry()
    for path in sorted(registry.glob("*.json")) if registry.is_dir() else []:  # none: Airflow is not even imported
        try:
            pid, owned = int(path.stem), json.loads(path.read_text())
        except (OSError, ValueError):  # gone since the glob, or not ours to read: its owner's business
            continue
        yield path, owned, _alive(pid, owned.get("started"))


def _left_behind() -> Iterator[tuple[Path, dict]]:
    """The runs of processes that are gone: listed, or claimed by a command that stopped before it had failed them
    (review: killed between its claim and its page, or failing on the metadata database, it left the run `running`
    for good, listed nowhere, and every run the UI's scheduler queued after it waited behind it)."""
    yield from ((path, owned) for path, owned, alive in _listed() if not alive)
    registry = _registry()
    for path in sorted(registry.glob("*.failing-*")) if registry.is_dir() else []:
        try:
            claimer, owned = int(path.suffix.removeprefix(".failing-")), json.loads(path.read_text())
        except (OSError, ValueError):  # gone since the glob (its claimer finished), or not ours to read
            continue
        # Not this process: it holds no claim between two runs it fails (one of its own pid is its predecessor's
        # with that pid, as a container's entrypoint). A live claimer's pid is trusted: late, never twice.
        if claimer == os.getpid() or not _alive(claimer, None):
            yield path, owned


def fail_abandoned_runs() -> list[str]:
    """Fail the runs of ``greenery run`` processes that are gone, and page on-call once for each; one line per run
    for the user. A process killed outright (kill -9, the out-of-memory killer, the machine gone) could say nothing
    itself (review: a cron job's run killed so was found by nobody, and a later command failed it in silence)."""
    said = []
    for path, owned in _left_behind():
        claimed = path.with_suffix(f".failing-{os.getpid()}")
        try:  # one command fails and pages it, should two find it at once
            os.rename(path, claimed)
        except FileNotFoundError:
            continue
        logical_date = dt.datetime.fromisoformat(owned["logical_date"])
        started = owned.get("run_started") and dt.datetime.fromisoformat(owned["run_started"])
        run_id = fail_run(owned["dag_id"], logical_date, started)
        if run_id is not None:
            went_out = published(run_id)
            what = (
                f"the greenery run (pid {path.stem}) running {logical_date.date()} ended without a word (killed"
                " outright: kill -9, the out-of-memory killer, a machine that went down); a later command found it"
            )
            paged = _page(owned["dag_id"], logical_date.date(), run_id, went_out, what)
            then = (
                "its tables WERE published; in the UI, clear its tasks after publish that did not succeed"
                if went_out
                else "clear it in the UI to run its day again"
            )
            said.append(
                f"marked failed: run {run_id} of {owned['dag_id']}, left running by a greenery run that stopped"
                f" (pid {path.stem}); {paged}; {then}"
            )
        claimed.unlink(missing_ok=True)
    return said


def live_runs() -> list[tuple[int, str]]:
    """The days (pid, day) that live `greenery run` processes are running on this Airflow home."""
    return [(int(path.stem), owned["logical_date"][:10]) for path, owned, alive in _listed() if alive]


@contextlib.contextmanager
def owned(dag_id: str, logical_date: dt.datetime, started: dt.datetime | None = None) -> Iterator[None]:
    """List this process as the owner of the run of ``logical_date`` while it runs; Ctrl-C fails the run, and so
    does any error out of it (review: `greenery run --verbose | head` failed its tasks on the closed pipe, and left
    the run running for good, unlisted, nobody told). A run that cannot be failed here stays listed: the next
    command fails it and pages."""
    path = _registry() / f"{os.getpid()}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    listed = {"dag_id": dag_id, "logical_date": logical_date.isoformat(), "started": _start_of(os.getpid())}
    listed["run_started"] = started and started.isoformat()  # the run's own (the process's is "started")
    path.with_suffix(".tmp").write_text(json.dumps(listed))
    os.replace(path.with_suffix(".tmp"), path)  # whole: another command may read it at any time
    day, ended = logical_date.date(), False
    try:
        yield
        ended = True
    except KeyboardInterrupt:
        run_id, ended = fail_run(dag_id, logical_date, started), True
        raise stopped(dag_id, day, run_id) from None
    except BrokenPipeError:  # the reader of its output left, as a Ctrl-C: failed, nobody paged
        run_id, ended = fail_run(dag_id, logical_date, started), True
        said = f"its output was closed at {day}: {_what_became(run_id, published(run_id))}{not_run_after(day)}"
        raise RunInterrupted(said, 141) from None
    except Exception as exc:
        run_id, ended = fail_run(dag_id, logical_date, started), True
        if run_id is not None:
            why = " ".join(str(exc).split())[:300]
            _page(dag_id, day, run_id, published(run_id), f"greenery run failed at {day}: {type(exc).__name__}: {why}")
        raise
    finally:
        if ended:
            path.unlink(missing_ok=True)


def stopped_by_the_user(dag_run) -> bool:
    """Whether the run failed because a task was interrupted (Ctrl-C landed inside it)."""
    from greenery import audit, warehouse

    with contextlib.suppress(Exception), warehouse.connect() as conn:
        stops = ("KeyboardInterrupt", USER_STOPPED)  # as recorded before and since (review: the new text was missed)
        return any(f["error"].startswith(stops) for f in audit.task_failures(conn, dag_run.run_id))
    return False
