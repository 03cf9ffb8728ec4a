"""Task ``publish``: swap the run's tables into the reader schemas unless a critical check failed."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from greenery import audit, build_schemas, lock_waits, runtime, wap, warehouse
from greenery.project import models as model_files
from greenery.tasks import notify, paging
from greenery.tasks.failures import Refused

log = logging.getLogger(__name__)

# Review: retried with backoff (a retry meets the same view), the page came minutes late, and PostgreSQL's hint said
# to drop it with CASCADE.
VIEW_ON_A_MART = (
    "Nothing was published. Have the view it names dropped (a view on a mart that publish replaces blocks every"
    " publish: build it as a table in a DAG scheduled on the mart Assets, or on a daily mart, which publish updates"
    " in place; the README's Views on marts), then clear publish with its downstream tasks: the same build publishes."
)


def run(summary: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    """Publish, or skip when blocked: then Airflow emits no asset event for marts that did not change.

    A publish that finds nothing to publish, a build that lost tables or one no passing validation checked fails
    (see wap.PublishError); one whose earlier try published the build and failed before reporting it succeeds,
    saying so.
    """
    if summary is None:  # validate skipped, or marked success, by hand: it returned nothing (review)
        raise Refused(
            "validate left no result in this run (marked skipped or success by hand?): nothing was published."
            " Clear validate with its downstream tasks.",
            next_step="Clear validate with its downstream tasks: it checks this run's build, then publishes it.",
            published=False,
        )
    build = runtime.build(context)
    with warehouse.connect() as conn:
        # In use while it waits for the publish lock, up to half the task timeout after a validation of up to all of
        # it (diff review: idle past a TTL near the timeout, another run's publish dropped it).
        build_schemas.touch(conn, build.key)
        if summary["blocking"]:
            audit.record_validation(conn, summary, published=False)
            status = audit.not_published_status(conn)
            log.warning(
                "NOT published: %d critical failures; still serving %s",
                summary["failed_critical"],
                status["serving_run"],
            )
            raise AirflowSkipException(f"not published: still serving the run of {status['serving_run']}")
        try:
            with conn.transaction():  # the record of what was published commits with the publish
                tables = wap.publish(conn, model_files.discover(), build)
                audit.record_validation(conn, summary, published=True)
        except wap.AlreadyPublished as done:
            # An earlier try committed (its validation record with it) and died before reporting success: the
            # marts are out, so this try succeeds, and the digest and the marts' asset events follow.
            log.warning("%s: this try reports that publish", done)
            serving = audit.last_published(conn)["logical_date"]
            published = {"published": True, "serving_run": serving, "tables": done.tables}
        except Exception as failed:
            _record_unpublished(conn, summary)
            # A lock wait that ran out waited GREENERY_PUBLISH_LOCK_WAIT_SECONDS in tries already: page now, naming
            # who holds the table, not after the task's retries and their delays (review: about 18 minutes). A
            # refusal is the build's state, which a retry does not change: fail now (review: retried with backoff,
            # the page came 5 to 8 minutes late). Anything else is retried.
            if isinstance(failed, lock_waits.LockWaitRanOut | wap.PublishError):
                if step := getattr(failed, "next_step", None):  # review: lost in the wrapping, the page said another
                    raise Refused(str(failed), next_step=step, published=False) from failed
                raise AirflowFailException(str(failed)) from failed
            if isinstance(failed, psycopg.errors.DependentObjectsStillExist):  # a view on a mart: there until dropped
                raise Refused(str(failed).split("\nHINT:")[0], next_step=VIEW_ON_A_MART, published=False) from failed
            raise
        else:
            log.info("published %s", ", ".join(tables))
            published = {"published": True, "serving_run": summary["logical_date"], "tables": tables}
    try:
        notify.alert_after_publish(summary, published, context, paging.send_or_raise)  # when alert_slack will not run
    except Exception as exc:
        raise paging.alert_not_sent_after_publish(exc) from exc
    return published


def _record_unpublished(conn, summary: dict[str, Any]) -> None:
    """This validation on record as not published, once: its record commits with the publish, which rolled back, so
    the Data quality view showed the run as "not validated", its warnings and quarantine hidden, while alert_slack
    skipped saying the view lists them (review). Best effort: the failure being raised is what pages."""
    try:
        if not audit.validation_recorded(conn, summary):
            audit.record_validation(conn, summary, published=False)
    except Exception as exc:
        log.warning("could not record this run's validation as not published: %s", exc)
