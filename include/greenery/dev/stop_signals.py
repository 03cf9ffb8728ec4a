"""What SIGTERM, SIGHUP and Ctrl-C do to a `greenery` command outside a day's run (dev/cli_runs.py has the days').

SIGTERM (``kill``, ``timeout``, a service manager's stop) and SIGHUP (a closed terminal) end the command through
Python's own exit, whose hooks stop the embedded PostgreSQL it started: one line, exit 143 or 129. Work that a stop
half-way would break for good (making the server's folder, starting it, migrating Airflow's database) runs with
every stop deferred to its end, in a session of its own where the terminal's signals to its whole group do not reach.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator

# How each stop is named on the command's line, and why it may have come, in the page (dev/cli_runs.py).
SIGNALS = {
    signal.SIGTERM: ("terminated (SIGTERM)", "kill, timeout or a service manager's stop"),
    signal.SIGHUP: ("hung up (SIGHUP)", "its terminal closed or its SSH session ended"),
}


class StopSignal(BaseException):  # not an Exception: no library's `except Exception` may swallow it
    """SIGTERM or SIGHUP outside a day's run: while the command prepares, or in a command that runs no day. It ends
    the command through Python's own exit, whose hooks stop the embedded PostgreSQL the command started (review:
    the signal's default action ended it at once, and the server stayed up; `greenery ui`'s Airflow with it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(SIGNALS[signum][0])
        self.signum = signum
        self.exit_status = 128 + signum


@contextlib.contextmanager
def end_the_command(whole_process: bool = True) -> Iterator[None]:
    """Inside, SIGTERM (and SIGHUP, unless ignored as under `nohup`) raise :class:`StopSignal` in the main thread;
    once one has, the next are ignored. Within a day, cli_runs.sigterm_stops_the_day takes them over.

    ``whole_process``: the command is the process, which ends after it: after a stop the signals stay ignored
    through the stop's line and the exit hooks. Otherwise (a caller in its own process: tests) they are put back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    ours = [s for s in SIGNALS if signal.getsignal(s) is signal.SIG_DFL]
    for signum in ours:
        signal.signal(signum, _raise_stop)
    _noted.clear()
    try:
        yield
    finally:
        if not whole_process or all(signal.getsignal(s) is _raise_stop for s in ours):
            for signum in ours:
                signal.signal(signum, signal.SIG_DFL)


def _raise_stop(signum: int, frame: object) -> None:
    """Stop the command; from now on, the stop signals handled here are ignored."""
    for stop in SIGNALS:
        if signal.getsignal(stop) in (_raise_stop, _note_stop):
            signal.signal(stop, signal.SIG_IGN)
    raise StopSignal(signum)


_DEFERRED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_noted: list[int] = []  # the stop signals that came while deferred
_handlers: dict[int, Callable] = {}  # what each deferred signal did before, and does again after


# The same one again stops at once: Ctrl-C pressed twice, or `kill` twice (a step that hangs would hold the command for
# good). Not SIGHUP: a closed terminal sends it twice by itself (the shell's, then the kernel's).
_FORCING = (signal.SIGINT, signal.SIGTERM)


def _note_stop(signum: int, frame: object) -> None:
    if signum in _FORCING and signum in _noted:
        _raise_noted()  # the first noted stop, now
        return
    if signum == signal.SIGINT:
        with contextlib.suppress(OSError):  # a terminal gone
            print("stopping once the step under way is done (Ctrl-C again stops it now, half-done)", file=sys.stderr)
    _noted.append(signum)


def _raise_noted() -> None:
    """Put the handlers back, then stop as the first noted signal's own handler does (StopSignal, KeyboardInterrupt).

    The signals are blocked meanwhile: one landing half-way would leave another still deferred for good (review).
    Those that came while blocked are the same stop, taken here: unblocked, one would replace it (a Ctrl-C after a
    SIGTERM, which pages, with a Ctrl-C's stop, which does not)."""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])  # a pending handler may run (and raise) here: nothing changed
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, _DEFERRED)
        for signum, handler in _handlers.items():
            if signal.getsignal(signum) is _note_stop:
                signal.signal(signum, handler)
        first = _noted[0] if _noted else None
        _noted.clear()  # one stop, however many signals came
        _handlers.clear()
        while first is not None and (pending := signal.sigpending() & set(_DEFERRED)):
            signal.sigwait(pending)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
    if first is not None:
        handler = signal.getsignal(first)
        if callable(handler):
            handler(first, None)
        else:  # ignored meanwhile (the command is ending): a plain stop
            raise KeyboardInterrupt


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Inside, a stop (Ctrl-C, SIGTERM, SIGHUP: whatever Python handler each has) is noted, and acted on as its own
    handler would once the work is done: for work that a stop half-way would break for good (review: killed
    mid-initdb, a state folder's server never started again; killed in `pg_ctl start`, the server it launched ran
    on; killed mid-migration, the next run read "no such table: dag"). Raised inside, a stop would land in
    subprocess's wait for the child, which kills the child. A second Ctrl-C or SIGTERM acts at once (a step that
    hangs)."""
    if threading.current_thread() is not threading.main_thread() or _handlers:  # not nested: the outer one notes
        yield
        return
    for signum in _DEFERRED:
        if callable(handler := signal.getsignal(signum)):
            _handlers[signum] = handler
            signal.signal(signum, _note_stop)
    _noted.clear()
    try:
        yield
    finally:
        _raise_noted()
