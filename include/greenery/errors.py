"""Errors a task's retry would only meet again (imported when the DAG is parsed: nothing heavy here)."""

from __future__ import annotations

# A task of `greenery run` stopped by Ctrl-C, SIGTERM or SIGHUP, as its failure is recorded (tasks/paging.py) and
# recognised (dev/cli_runs.py: the stop is then the command's, which pages for a signal).
USER_STOPPED = "stopped while it ran: `greenery run` was interrupted (Ctrl-C) or ended by SIGTERM or SIGHUP"


class RetryCannotFix(Exception):
    """A mix-in for errors of the project's own files or SQL, or of the warehouse's setup (its version, the role's
    grants): the DAG's retry policy fails the task at once (review: a typo in a model cost two retries, 60 s then
    120 s, before its error reached the user)."""
