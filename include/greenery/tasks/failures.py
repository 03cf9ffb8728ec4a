"""Failures that page by other means than the DAG's failure callback (see tasks.paging), so it does not page twice."""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowFailException

# How a task failure on record (greenery_audit.task_failures) says its page did not go (tasks/paging.py); alert_slack
# reads it (tasks/notify.py).
NOT_PAGED = " (on-call was NOT paged: Slack did not take the page; the task log says why)"
MAYBE_PAGED = " (the page may have been posted: look in the alert channel)"


class PagedFailure(AirflowFailException):
    """The task failed after it paged on-call itself (no retry, no second page)."""


class AlertFollows(PagedFailure):
    """The task failed and ``alert_slack``, downstream, pages with the details (validate's failed checks)."""


class MaybePosted(AirflowFailException):
    """Slack took a message and never answered: it may have been posted, so the task is not retried, and the page
    about it gives ``next_step`` as its only instruction (review: it also said to fix the cause and clear the whole
    run, which would rebuild and check the day again for a message that may be in the channel already)."""

    def __init__(self, message: str, next_step: str, published: bool | None = None) -> None:
        super().__init__(message)
        self.next_step = next_step
        self.published = published  # said by the failure (after publish's commit: True); None: the run's state says


class Refused(AirflowFailException):
    """Not retried (a retry would find the same), and its page gives ``next_step`` and, when ``published`` is not
    None, says whether the marts went out as the failure knows it (review: the digest's refusal for an attempt that
    published nothing was paged with "The marts were published by this run ... clear state_of_the_data only", which
    fails again: the run's state said so, from an earlier attempt)."""

    def __init__(self, message: str, next_step: str, published: bool | None = None) -> None:
        super().__init__(message)
        self.next_step = next_step
        self.published = published


class PublishedAlertNotSent(Exception):
    """``publish`` committed, and the run's warnings alert it had to send (alert_slack will not run again) did not
    go. Retried: a retry finds the build published and only sends the alert."""

    published = True

    def __init__(self, message: str, next_step: str) -> None:
        super().__init__(message)
        self.next_step = next_step
