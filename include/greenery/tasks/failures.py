"""Failures that page by other means than the DAG's failure callback (see tasks.paging), so it does not page twice."""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowFailException


class PagedFailure(AirflowFailException):
    """The task failed after it paged on-call itself (no retry, no second page)."""


class AlertFollows(PagedFailure):
    """The task failed and ``alert_slack``, downstream, pages with the details (validate's failed checks)."""
