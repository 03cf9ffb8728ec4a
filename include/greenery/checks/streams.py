"""Run validation's suites on several warehouse connections at once, and stop them all together (no GX import).

On a large warehouse GX's pass 1 mostly waits on PostgreSQL (scale 1000: 106 s of validation for about 7 s of
the task's CPU), so the suites are split into streams, each on its own connection and thread: PostgreSQL runs
one stream's query while GX builds another's. :func:`costs` says what each suite costs, :func:`order` puts the
costliest first, and :func:`run` runs the streams, each of which takes the next suite (:func:`take`) when it is free.

A stream must never outlive :func:`run`: the caller closes the connections right after, and libpq forbids
closing a connection another thread is using. So when anything goes wrong (a stream raises, or the task's
own thread gets an exception such as Airflow's execution timeout), every stream is told to stop after its
current suite, each connection's running query is cancelled until its stream has ended, and only then the
error propagates.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
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


BY_SECONDS_BEFORE, BY_TABLE_SIZES = "each suite's seconds in earlier validations", "table sizes"


def costs(
    conn, expectations: Mapping[str, int], relation, seconds_before: Mapping[str, float] | None
) -> tuple[dict[str, float], str]:
    """What the suites are ordered on (:func:`order`), by suite (``expectations``: each suite's count), and what that
    is: its seconds in an earlier validation when every suite has them, else an estimate, its table's bytes times its
    expectations (GX scans the table once for the bundled column checks and once more per query check). The
    estimate cannot see what a query check reads besides its table: at scale 1000 it put the events' suite (12 s of
    the 61 s measured) with five others when the streams' shares were fixed before the start (21 and 40 s; on the
    seconds measured before, 32 and 33 s: benchmarks/RESULTS.md)."""
    if seconds_before and all(seconds_before.get(name) is not None for name in expectations):
        return {name: float(seconds_before[name]) for name in expectations}, BY_SECONDS_BEFORE
    sizes = dict(
        conn.execute(
            "select name, coalesce(pg_total_relation_size(to_regclass(rel)), 0)"
            " from unnest(%s::text[], %s::text[]) as t(name, rel)",
            (list(expectations), [relation(name) for name in expectations]),
        ).fetchall()
    )
    return {name: (sizes[name] + 8192) * count for name, count in expectations.items()}, BY_TABLE_SIZES


def order(costs: Mapping[str, float]) -> deque[str]:
    """The suites costliest first (then by name), as a queue the streams share.

    Each stream takes the next suite when it is free (:func:`take`), not a share fixed before the start: a fixed
    split is only as good as its estimate, and a fresh warehouse's (table sizes) had left one stream 21 s and the
    other 40 s at scale 1000. Taken in this order, the streams end at most one suite apart: the one that ends last.
    """
    return deque(sorted(costs, key=lambda name: (-costs[name], name)))


def take(queue: deque[T], stopped: Callable[[], bool]) -> Iterator[T]:
    """The items of ``queue`` one at a time to the stream that iterates, while nothing stopped the streams. Safe
    from several threads at once: ``deque.popleft`` is atomic, so each item goes to one stream only."""
    while not stopped():
        try:
            item = queue.popleft()
        except IndexError:
            return
        yield item


def run(jobs: Sequence[Callable[[Callable[[], bool]], T]], connections: Sequence[Cancellable]) -> list[T]:
    """Run each job in its own thread, job ``i`` on ``connections[i]``; return their results in order.

    A job gets a ``stopped()`` callable to check between its suites. When any job raises, or this thread is
    interrupted, the others are stopped (see the module's docstring) before the first error propagates.
    """
    if len(jobs) != len(connections):
        raise ValueError(f"{len(jobs)} jobs for {len(connections)} connections")
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
