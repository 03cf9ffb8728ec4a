"""Run validation's suites on several warehouse connections at once, and stop them all together (no GX import).

On a large warehouse GX's pass 1 mostly waits on PostgreSQL (scale 1000: 106 s of validation for about 7 s of
the task's CPU), so the suites are split into streams, each on its own connection: PostgreSQL runs one stream's
query while GX builds another's. :func:`assign` splits them, :func:`run` runs them.

Streams are processes, forked (Linux): on a small warehouse pass 1 is GX's own Python, one core's work under
the GIL in threads (the real data, 32 suites: 3.7-4.0 s in two threads, 1.8-2.2 s in two forked processes,
2026-12-05). A child runs its stream on the connection the parent opened for it (the parent does not touch it
meanwhile), sends its results back through a pipe and ends with ``os._exit``: it must not close the connections
it inherited, which would end the parent's sessions. Threads remain for one stream, and where there is no fork.

A stream must never outlive :func:`run`: the caller closes the connections right after, and libpq forbids
closing a connection another thread is using. So when anything goes wrong (a stream raises, or the task's
own thread gets an exception such as Airflow's execution timeout), every stream is stopped (a thread after its
current suite, a process at once), each connection's running query is cancelled until its stream has ended,
and only then the error propagates. A child also dies with its parent (a task killed by the OOM killer).
"""

from __future__ import annotations

import contextlib
import ctypes
import heapq
import logging
import os
import pickle
import selectors
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Protocol, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
# How often a stream that was told to stop gets its running query cancelled again (GX may start another
# query of the same suite after a cancelled one).
CANCEL_EVERY_S = 0.5
# How long this thread waits for the streams at most before it looks at pending signals again.
WAKE_EVERY_S = 1.0


class Cancellable(Protocol):
    def cancel_safe(self) -> None: ...


def assign(costs: Mapping[str, float], count: int) -> dict[str, int]:
    """Each item's stream in ``range(count)``: the costliest first, each to the least loaded stream."""
    loads = [(0.0, stream) for stream in range(count)]
    assigned = {}
    for name in sorted(costs, key=lambda name: (-costs[name], name)):
        load, stream = heapq.heappop(loads)
        assigned[name] = stream
        heapq.heappush(loads, (load + costs[name], stream))
    return assigned


# Forked streams where the platform forks safely enough for a child that only runs GX and psycopg (Linux).
CAN_FORK = sys.platform.startswith("linux")


def run(
    jobs: Sequence[Callable[[Callable[[], bool]], T]], connections: Sequence[Cancellable], processes: bool = False
) -> list[T]:
    """Run each job in its own thread, or forked process with ``processes``, job ``i`` on ``connections[i]``;
    return their results in order (a process's result must pickle).

    A job gets a ``stopped()`` callable to check between its suites. When any job raises, or this thread is
    interrupted, the others are stopped (see the module's docstring) before the first error propagates.
    """
    if len(jobs) != len(connections):
        raise ValueError(f"{len(jobs)} jobs for {len(connections)} connections")
    if processes and CAN_FORK:
        return _run_in_processes(jobs, connections)
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=max(1, len(jobs)), thread_name_prefix="gx-stream") as pool:
        futures = [pool.submit(job, stop.is_set) for job in jobs]
        try:
            running = futures
            while running:
                # Not one unbounded wait: a signal the kernel gives to a stream's thread (Airflow's SIGALRM
                # timeout is sent to the process) is handled in this thread only once it runs Python again.
                done, running = wait(futures, timeout=WAKE_EVERY_S, return_when=FIRST_EXCEPTION)
                for future in done:
                    future.result()  # a stream's error, if any
        except BaseException as exc:
            stop.set()
            log.warning("validation stopped (%s): cancelling the queries of the streams still running", exc)
            _cancel_until_done(futures, connections)
            raise
    return [future.result() for future in futures]


def _cancel_until_done(futures: Sequence[Future], connections: Sequence[Cancellable]) -> None:
    while not all(future.done() for future in futures):
        for future, conn in zip(futures, connections, strict=True):
            if not future.done():
                try:
                    conn.cancel_safe()
                except Exception as exc:  # the stream still ends, after its query
                    log.warning("could not cancel a validation query: %s", exc)
        wait(futures, timeout=CANCEL_EVERY_S)


class StreamDiedError(RuntimeError):
    """A stream's process ended without its results (killed by a signal, or out of memory)."""


def _run_in_processes(jobs: Sequence[Callable[[Callable[[], bool]], T]], connections: Sequence[Cancellable]) -> list[T]:
    children: dict[int, int] = {}  # job index -> pid, until reaped
    pipes: dict[int, int] = {}  # job index -> the read end of its result pipe, until read to the end
    try:
        for index, job in enumerate(jobs):
            read, write = os.pipe()
            parent = os.getpid()
            pid = os.fork()
            if pid == 0:  # the child: never returns
                os.close(read)
                _child(job, write, parent)
            os.close(write)
            children[index], pipes[index] = pid, read
        return _collect(children, pipes, len(jobs))
    except BaseException as exc:
        if children:
            log.warning("validation stopped (%s): ending its streams and cancelling their queries", exc)
        _stop(children, connections)
        raise
    finally:
        for read in pipes.values():
            os.close(read)


def _child(job: Callable[[Callable[[], bool]], T], write: int, parent: int) -> None:
    code = 1
    try:
        # The task's handlers (Airflow's SIGTERM, Ctrl-C) belong to the parent; the child just ends.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        _die_with_parent()
        if os.getppid() != parent:  # it died before the child asked to die with it
            return
        try:
            payload = ("ok", job(lambda: False))  # stopped by a signal from the parent, not between suites
        except BaseException as exc:
            payload = ("error", _picklable(exc), traceback.format_exc())
        with os.fdopen(write, "wb") as out:
            out.write(pickle.dumps(payload))
        code = 0
    finally:
        os._exit(code)  # no atexit, no finalizers: the inherited connections stay the parent's


def _die_with_parent() -> None:
    """PR_SET_PDEATHSIG: the kernel kills this process when the one that forked it dies."""
    # Without Linux's libc the child would outlive a killed parent by its suites.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


def _picklable(exc: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc))  # noqa: S301 (this process's own bytes)
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _collect(children: dict[int, int], pipes: dict[int, int], count: int) -> list:
    """Read every child's result, reaping each as its pipe ends; a child's error is raised as it arrives."""
    received: dict[int, bytes] = {index: b"" for index in pipes}
    results: dict[int, object] = {}
    with selectors.DefaultSelector() as selector:
        for index, read in pipes.items():
            selector.register(read, selectors.EVENT_READ, index)
        while len(results) < count:
            # Not one unbounded wait: a signal for this thread (Airflow's SIGALRM timeout) is handled as it comes.
            for key, _ in selector.select(timeout=WAKE_EVERY_S):
                index = key.data
                chunk = os.read(key.fd, 1 << 16)
                if chunk:
                    received[index] += chunk
                    continue
                selector.unregister(key.fd)
                os.close(pipes.pop(index))
                _, status = os.waitpid(children.pop(index), 0)
                results[index] = _outcome(index, received.pop(index), status)
    return [results[index] for index in range(count)]


def _outcome(index: int, data: bytes, status: int):
    if not data:
        how = (
            f"killed by {signal.Signals(os.WTERMSIG(status)).name}: out of memory, or killed by hand"
            if os.WIFSIGNALED(status)
            else f"exit status {os.waitstatus_to_exitcode(status)}"
        )
        raise StreamDiedError(f"validation stream {index + 1} ended without its results ({how})")
    payload = pickle.loads(data)  # noqa: S301 (from the child this process forked, through its own pipe)
    if payload[0] == "error":
        log.error("validation stream %d failed:\n%s", index + 1, payload[2])
        raise payload[1]
    return payload[1]


def _stop(children: dict[int, int], connections: Sequence[Cancellable]) -> None:
    """Kill the children still running, cancel whatever query each left running on its connection, reap them."""
    for pid in children.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for index in children:
        try:
            connections[index].cancel_safe()
        except Exception as exc:  # the server ends it anyway once the connection is closed
            log.warning("could not cancel a validation query: %s", exc)
    for pid in children.values():
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    children.clear()
