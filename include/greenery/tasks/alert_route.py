"""Where alerts go: the Slack route every alert_slack checks, and whether a published run's findings can go at all."""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowFailException

from greenery import config, warehouse
from greenery.alerts import delivery

OFF = " (GREENERY_ALERT_CONN_ID=none: Slack is off)"


def no_route() -> str:
    """Checked on every alert_slack: a note for its skip without a Slack setup (the default connection not defined, or
    without a URL); a failure for any other connection that cannot carry a page (user trial: a misspelt one surfaced
    only on the day a page was needed, and that page went nowhere). ``none``: no Slack."""
    settings = config.get()
    conn_id = settings.alert_conn_id
    if conn_id == delivery.SLACK_OFF:
        return ""
    if (why := delivery.route_problem(conn_id)) is None:  # defined, with a secret: set up, and set up right?
        if (why := setup_problem(conn_id, settings.alert_channel, "GREENERY_ALERT_CHANNEL")) is None:
            return ""
    elif conn_id == config.ALERT_CONN_ID and not warehouse.unparsed_connection(conn_id):
        return f" ({why}: pages go nowhere; see the README's Slack setup)"
    raise AirflowFailException(
        f"GREENERY_ALERT_CONN_ID={conn_id!r}: {why}: no page can reach on-call, on any run (this one's marts are as"
        " its checks left them). Correct the setting or define the connection, or set GREENERY_ALERT_CONN_ID=none"
    )


def setup_problem(conn_id: str, channel: str | None, channel_setting: str) -> str | None:
    """What keeps every message from a defined connection that holds a secret: a conn_type other than Slack's two,
    or an API-token connection without a channel (review: both passed the route check, and failed the first page
    due, as a refusal no retry fixes)."""
    conn_type = delivery.conn_type_of(conn_id)
    if conn_type not in (delivery.WEBHOOK_CONN_TYPE, delivery.API_CONN_TYPE):
        return (
            f"Slack connection {conn_id!r} has conn_type {conn_type!r}: use {delivery.WEBHOOK_CONN_TYPE!r}"
            f" (Incoming Webhook) or {delivery.API_CONN_TYPE!r} (API token)"
        )
    if conn_type == delivery.API_CONN_TYPE and not channel:
        return (
            f"Slack connection {conn_id!r} is an API-token connection, which needs a channel ({channel_setting} unset)"
        )
    return None


def slack_off(route: str | None = None) -> str:
    """Why a published run's warnings and quarantined rows go nowhere, by setup or on purpose: ``route``'s note
    (no_route's: the default connection not defined or without a URL), or ``none``; '' when a route is set. Such a
    run is not failed for it (user trial: without Slack every such day failed, and `greenery run` stopped its range
    there); a connection set but broken fails as no_route says, read here when ``route`` is not given."""
    if config.get().alert_conn_id == delivery.SLACK_OFF:
        return OFF
    if route is None:
        try:
            route = no_route()
        except AirflowFailException:
            return ""  # broken, not absent: the send fails, loudly
    return route
