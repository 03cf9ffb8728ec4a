"""Errors a task's retry would only meet again (imported when the DAG is parsed: nothing heavy here)."""

from __future__ import annotations


class RetryCannotFix(Exception):
    """A mix-in for errors of the project's own files or SQL: the DAG's retry policy fails the task at once (review:
    a typo in a model cost two retries, 60 s then 120 s, before its error reached the user)."""
