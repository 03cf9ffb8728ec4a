"""Publishing waits for other sessions' locks a bounded time, in short tries, and names the sessions in its way.

Publish swaps published tables (``drop table``, ``alter table ... set schema``): each takes an ACCESS EXCLUSIVE lock,
which waits for every session reading the table, one idle in an open transaction included (a BI tool, psql), and every
later reader of the table queues behind that wait. Unbounded, one idle session held the publish, and every reader of
the table after it, until the task's timeout an hour later, with nothing in the log (review). Each try now takes the
locks of every table it changes first, giving up after TRY_SECONDS (readers queue that long at most, and a try that
cannot have them has changed nothing); the publish tries again until GREENERY_PUBLISH_LOCK_WAIT_SECONDS have passed
since it first held the publish lock (locks.py: the runs building and validating are waited for as before), then
fails naming the sessions that hold the table.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from psycopg import errors, sql

from greenery import config, locks
from greenery.materialize import relations
from greenery.project.models import Model

log = logging.getLogger(__name__)

TRY_SECONDS = 5.0
PAUSE_SECONDS = 1.0  # between tries: the readers queued behind the try go first
T = TypeVar("T")

SWAP, MERGE = "access exclusive", "row exclusive"  # replacing a table; changing its rows
# The sessions holding a lock (``{where}`` picks it), oldest holder first: one in a transaction since it began, one
# holding a session-level lock outside any (a validation's) since it connected.
_HOLDERS = """
select a.pid, coalesce(nullif(a.application_name, ''), 'no application name'), a.usename, a.state, l.mode,
    to_char(coalesce(a.xact_start, a.backend_start) at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS'),
    left(regexp_replace(a.query, '\\s+', ' ', 'g'), 120), a.query = '<insufficient privilege>', current_user,
    a.xact_start is null
from pg_locks as l join pg_stat_activity as a on a.pid = l.pid
where {where} and l.granted and l.pid <> pg_backend_pid()
order by coalesce(a.xact_start, a.backend_start), a.pid
"""


def mode(conn, model: Model, built: str, delta: str | None) -> str:
    """How publish changes ``model``'s published table from ``built``: its rows (a delta merged, a day replaced) or the
    table (swapped; a daily partition given a column the model gained: relations.append_new_columns)."""
    if delta is not None:
        return MERGE
    if model.materialized == "daily_partition":
        published = {name for name, _ in relations.columns(conn, model.relation) or []}
        new = {name for name, _ in relations.columns(conn, built) or []} - published
        return SWAP if published and new else MERGE
    return SWAP


class LockWaitRanOut(RuntimeError):
    """A publish gave up waiting for other sessions' locks; nothing was published."""


class Try:
    """One try of a publish: its lock timeout, and the table it takes a lock on."""

    def __init__(self, conn, deadline: list[float], wait_s: float) -> None:
        self.conn, self._deadline, self._wait_s = conn, deadline, wait_s
        self.relation: str | None = None  # the table a lock wait running out waited for
        self.mode = SWAP
        self._created = time.monotonic()
        self._previous: str | None = None

    def arm(self) -> None:
        """Once the publish lock is held: this try's lock timeout (the wait's clock starts at the first try's)."""
        now = time.monotonic()
        if not self._deadline:
            self._deadline.append(now + self._wait_s)
        else:  # a later try's wait for the publish lock (other runs) is no wait for readers
            self._deadline[0] += now - self._created
        self._previous = self.conn.execute("select current_setting('lock_timeout')").fetchone()[0]
        timeout_s = min(TRY_SECONDS, max(self._deadline[0] - time.monotonic(), 0.001))
        self.conn.execute("select set_config('lock_timeout', %s, true)", (f"{max(1, round(timeout_s * 1000))}ms",))

    def working_on(self, relation: str, mode: str) -> None:
        """What a lock wait running out now waited for: ``relation``, to change it in ``mode`` (SWAP or MERGE)."""
        self.relation, self.mode = relation, mode

    def take(self, relation: str, mode: str) -> None:
        """A lock on ``relation`` (if it exists) in ``mode`` (SWAP or MERGE), for the rest of the transaction."""
        self.working_on(relation, mode)
        if relations.exists(self.conn, relation):
            lock = sql.SQL("lock table only {} in " + mode + " mode")  # mode: one of the two constants above
            self.conn.execute(lock.format(relations.ident(relation)))

    def disarm(self) -> None:
        """The rest of the caller's transaction keeps its own lock timeout."""
        if self._previous is not None:
            self.conn.execute("select set_config('lock_timeout', %s, true)", (self._previous,))


def bounded(conn, attempt: Callable[[Try], T], wait_s: float) -> T:
    """``attempt(try_)`` in tries. Each runs in a transaction of its own (rolled back whole when a lock wait runs out),
    calls ``try_.arm()`` once it holds the publish lock, ``try_.take`` for each table it changes before it changes
    any, and ``try_.disarm()`` at its end."""
    deadline: list[float] = []
    tries = 0
    while True:
        tries += 1
        try_ = Try(conn, deadline, wait_s)
        try:
            return attempt(try_)
        except (errors.LockNotAvailable, errors.DeadlockDetected) as exc:  # a reader locking in another order
            if not deadline or time.monotonic() + PAUSE_SECONDS >= deadline[0]:
                raise LockWaitRanOut(_gave_up(conn, try_, wait_s, tries)) from exc
            why = "deadlocked with" if isinstance(exc, errors.DeadlockDetected) else "is locked by"
            log.warning("publish, try %d: %s %s another session; trying again", tries, _named(try_), why)
            time.sleep(PAUSE_SECONDS)


def runs_deadline() -> float:
    """Until when (time.monotonic()) a publish waits for the runs building and validating: 80 % of what the task
    timeout leaves after its wait for readers, so that it fails naming them before the timeout names nobody."""
    settings = config.get()
    return time.monotonic() + 0.8 * (settings.task_timeout - settings.publish_lock_wait).total_seconds()


def take_publish_lock(conn, deadline: float) -> None:
    """``locks.exclusive``: wait for the runs building and validating until ``deadline`` (time.monotonic()), naming
    them in the log when it has to wait; then LockWaitRanOut naming them. Review: a validating worker frozen or cut off
    held its shared lock on a session the server kept; every publish (and every run queued behind it) waited until the
    task's timeout, which named nobody. One wait, not tries: a try given up lets the runs that queued behind the
    publish go first (review of tries of 5 s). Call it first in the publish's transaction."""
    if conn.execute("select pg_try_advisory_xact_lock(%s)", (locks.PUBLISH_LOCK_KEY,)).fetchone()[0]:
        return
    started = time.monotonic()
    previous = conn.execute("select current_setting('lock_timeout'), current_setting('statement_timeout')").fetchone()
    left = max(0.0, deadline - started)  # shared by the publish's tries: a later one may have none left
    log.warning("publish waits for the runs building and validating (at most %.0f s): %s", left, _runs(conn))
    try:
        with conn.transaction():  # a savepoint: a wait that runs out leaves the publish's transaction as it was
            # The lock timeout bounds it; a role's statement_timeout would cut it short as another error (review).
            conn.execute(
                "select set_config('lock_timeout', %s, true), set_config('statement_timeout', '0', true)",
                (f"{max(1, round(left * 1000))}ms",),
            )
            locks.exclusive(conn)
    except errors.LockNotAvailable:
        raise LockWaitRanOut(
            f"publish waited {time.monotonic() - started:.0f} s, the rest of its 80 % of what the task timeout leaves"
            " after GREENERY_PUBLISH_LOCK_WAIT_SECONDS, for the runs building and validating, which hold the publish"
            f" lock: {_runs(conn)}; nothing was published. A session idle for long is a run's task that hangs or whose"
            " host is gone: end it (select pg_terminate_backend(pid)), then clear publish."
        ) from None
    conn.execute(
        "select set_config('lock_timeout', %s, true), set_config('statement_timeout', %s, true)", tuple(previous)
    )


def _runs(conn) -> str:
    """The sessions holding the publish lock, as the messages name them."""
    return _holders(conn, locks.HOLDERS_WHERE) or "none any more"


def _holders(conn, where: str, params: tuple = ()) -> str:
    """The sessions holding the locks ``where`` picks (over ``pg_locks as l``), as the messages name them."""
    return "; ".join(_session(*held) for held in conn.execute(_HOLDERS.format(where=where), params).fetchall())


def _gave_up(conn, try_: Try, wait_s: float, tries: int) -> str:
    sessions = _holders(conn, "l.relation = to_regclass(%s)", (try_.relation,)) if try_.relation else ""
    return (
        f"publish gave up after {tries} tries in {wait_s:g} s (GREENERY_PUBLISH_LOCK_WAIT_SECONDS) to lock "
        f"{_named(try_)}, held by {sessions or 'a session that has let go of it since'}; nothing was published. "
        "Commit or end those sessions (select pg_terminate_backend(pid), as a superuser, the session's own role or"
        " one granted pg_signal_backend, which cannot end a superuser's), then clear publish."
    )


def _session(pid, app, user, state, held, since, query, hidden: bool, me: str, connected: bool) -> str:
    """One holder as the message names it. Another role's session shows its state, transaction and query only to a
    role granted pg_read_all_stats: say so, not "None" and "<insufficient privilege>" (review)."""
    if hidden:
        return (
            f"pid {pid} ({app}, user {user}, holding {held}; its query is hidden from role {me}:"
            " grant it pg_read_all_stats to see it)"
        )
    when = "connected" if connected else "in a transaction"  # a session-level lock outside one (a validation)
    return f"pid {pid} ({app}, user {user}, {state}, holding {held}, {when} since {since} UTC: {query})"


def _named(try_: Try) -> str:
    return try_.relation or "a table it changes"
