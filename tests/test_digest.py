"""The stakeholders' digest (task state_of_the_data): email through Airflow's SMTP provider to a real SMTP
server on 127.0.0.1 (aiosmtpd, with AUTH), the 28-day chart as an inline PNG, the same trend in Slack (a real
local HTTP server), and loud failures for bad SMTP settings. The task body runs with a stand-in context on
the published real Greenery data; one test runs the whole DAG through Airflow."""

from __future__ import annotations

import contextlib
import datetime as dt
import email
import email.policy
import io
import json
import re
import socket
import threading
import time
from pathlib import Path

import psycopg
import pytest
from slack_server import conn_env_var
from smtp_server import PASSWORD, REFUSED_DOMAIN, SENDER, USER, FakeSmtp

from greenery.alerts import chart, digest_email
from greenery.alerts.digest_message import build_summary_message
from greenery.trend import Point

# The test server takes AUTH over plain loopback on purpose (no certificate to make); aiosmtpd warns about it.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")

DAY = dt.date(2021, 2, 12)
RUN_ID = "manual__2021-02-12T00:00:00+00:00"
TO = ("ana@example.com", "bo@example.com")
GREEN, BLUE, AMBER = ((s.color) for s in chart.series_of([]))


@pytest.fixture
def digest():
    """The task module, imported by the tests that run it: importing it imports Airflow (2 s), which the
    fast tier's tests of the chart and the email do not need."""
    from greenery.tasks import digest

    return digest


def validation_summary(**changes) -> dict:
    return {
        "dag_id": "greenery_daily",
        "run_id": RUN_ID,
        "logical_date": DAY.isoformat(),
        "evaluated": 250,
        "failed_critical": 0,
        "failed_warning": 0,
        "quarantined": {"staging.stg_postgres__events": 2},
        "validation_id": "attempt-0",
        **changes,
    }


def context(summary: dict | None = None) -> dict:
    """A task context with a ``ti`` stand-in that hands out the validation summary (as tests/test_properties.py)."""
    from greenery.tasks.validate import SUMMARY_KEY

    summary = summary or validation_summary()

    def xcom_pull(self, task_ids=None, key=None):
        assert (task_ids, key) == ("validate", SUMMARY_KEY)
        return summary

    ti = type("TaskInstance", (), {"xcom_pull": xcom_pull, "task_id": "state_of_the_data"})()
    return {"run_id": RUN_ID, "logical_date": dt.datetime.combine(DAY, dt.time(), tzinfo=dt.UTC), "ti": ti}


def publish(url: str) -> None:
    """Log a publish of RUN_ID with its validation, as the publish task does in one transaction (the digest is about
    the publish of the validation it reads)."""
    from greenery import audit

    with psycopg.connect(url, autocommit=True) as conn:
        audit.ensure(conn)
        with conn.transaction():
            audit.record_publish(conn, RUN_ID, DAY, ["marts.fact_orders"])
            audit.record_validation(conn, validation_summary(), published=True)


@pytest.fixture
def published_url(published_url):
    """conftest's copy of the published real data, with a publish of RUN_ID logged: a digest is about its run's
    publish, and a run that published nothing gets none."""
    publish(published_url)
    return published_url


@pytest.fixture
def smtp(request):
    """The test SMTP server; parametrized indirectly with "starttls" or "implicit", it speaks TLS (a dict: the
    server's options)."""
    param = getattr(request, "param", None)
    with FakeSmtp(**param) if isinstance(param, dict) else FakeSmtp(tls=param) as server:
        yield server


@pytest.fixture
def email_on(smtp, monkeypatch):
    """The digest by email to TO through the connection digest_email; Slack's summary off."""
    monkeypatch.delenv("GREENERY_SUMMARY_CONN_ID", raising=False)
    monkeypatch.setenv(conn_env_var("digest_email"), smtp.conn_json())
    monkeypatch.setenv("GREENERY_DIGEST_EMAIL_CONN_ID", "digest_email")
    monkeypatch.setenv("GREENERY_DIGEST_EMAIL_TO", ", ".join(TO))
    return smtp


def parse(content: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(content, policy=email.policy.default)


def parts(message) -> tuple:
    """(text/plain, text/html, image/png) of a digest, asserting the MIME layout on the way."""
    assert message.get_content_type() == "multipart/alternative"
    text, related = message.get_payload()
    assert (text.get_content_type(), related.get_content_type()) == ("text/plain", "multipart/related")
    html, image = related.get_payload()
    assert (html.get_content_type(), image.get_content_type()) == ("text/html", "image/png")
    return text, html, image


def colour_pixels(png: bytes, colour: tuple[int, int, int], tolerance: int = 40) -> int:
    """How many pixels of the image are close to ``colour`` (Pillow decodes it, or the test fails)."""
    from PIL import Image, ImageChops

    with Image.open(io.BytesIO(png)) as image:
        image.load()
        rgb = image.convert("RGB")
    # One mask per channel (255 where that channel is within tolerance), ANDed: Pillow's C loops, not Python's.
    masks = [
        band.point([255 if abs(v - c) <= tolerance else 0 for v in range(256)])
        for band, c in zip(rgb.split(), colour, strict=True)
    ]
    both = ImageChops.multiply(ImageChops.multiply(masks[0], masks[1]), masks[2])
    return both.histogram()[255]


def published_metrics(url: str) -> tuple[float, float]:
    with psycopg.connect(url) as conn:
        rr, cr = conn.execute(
            "select repeat_rate, conversion_rate from marts.metrics_daily where as_of_date = %s", (DAY,)
        ).fetchone()
    return float(rr), float(cr)


# --- no database -----------------------------------------------------------------------------------------


def test_sparkline_scales_between_min_and_max_and_marks_missing_days():
    assert chart.sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert chart.sparkline([None, 10, None, 10]) == "·▄·▄"  # a flat series sits in the middle
    assert chart.sparkline([None, None]) == "··"
    assert chart.sparkline([0.5, 1.0, 0.75]) == "▁█▅"


def test_the_notes_say_how_each_series_moved_over_the_window():
    points = synthetic_points()
    repeat, _, orders = chart.series_of(points)
    days = [p.day for p in points]
    assert chart.note(repeat, days) == f"{(points[-1].repeat_rate - points[0].repeat_rate) * 100:+.1f} pts since Jan 16"
    assert chart.note(orders, days) == f"{sum(p.orders for p in points):,} in 28 days"
    assert chart.note(chart.Series("x", [None, 0.5], GREEN, "line", "pct"), days[:2]) is None  # one figure


@pytest.mark.db
def test_off_by_default_the_task_skips_and_says_how_to_turn_it_on_once_the_run_published(
    digest, published_url, monkeypatch
):
    """Review: off, it skipped before it looked at the publish: a publish marked success by hand (or while it still
    ran) left a green run that published nothing, and nobody paged. Off or on, such a run fails, and pages."""
    for name in ("GREENERY_SUMMARY_CONN_ID", "GREENERY_DIGEST_EMAIL_CONN_ID", "GREENERY_DIGEST_EMAIL_TO"):
        monkeypatch.delenv(name, raising=False)
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from greenery import wap, warehouse

    off = "GREENERY_DIGEST_EMAIL_CONN_ID with GREENERY_DIGEST_EMAIL_TO"
    with pytest.raises(AirflowSkipException, match=off):
        digest.send(context())
    unvalidated = context()
    unvalidated["ti"].xcom_pull = lambda task_ids=None, key=None: None  # validate marked success too
    with pytest.raises(AirflowFailException, match=f"run {re.escape(RUN_ID)} has no validation of its own"):
        digest.send(unvalidated)
    # The whole run cleared (its build prepared again), validate marked success by hand: XCom still holds the earlier
    # attempt's summary, whose validation that attempt published (review). The build was not published again.
    with psycopg.connect(published_url, autocommit=True) as conn:
        wap.prepare(conn, wap.Build(RUN_ID, DAY))
    with pytest.raises(AirflowFailException, match=r"published nothing in this attempt \(an earlier attempt of the"):
        digest.send(context())
    with psycopg.connect(published_url, autocommit=True) as conn:
        conn.execute("update greenery_audit.builds set state = 'published' where run_id = %s", (RUN_ID,))
    with pytest.raises(AirflowSkipException, match=off):  # the control: that build published
        digest.send(context())

    # A warehouse that does not answer after publish reported success: skipped, saying so, not paged as "nothing was
    # published" (review).
    def unreachable(*_, **__):
        raise warehouse.WarehouseUnavailableError("warehouse unreachable: connection refused")

    with monkeypatch.context() as patched, pytest.raises(AirflowSkipException, match=off):
        patched.setattr(warehouse, "connect", unreachable)
        digest.send(context())

    with psycopg.connect(published_url, autocommit=True) as conn:
        conn.execute("delete from greenery_audit.publish_log where run_id = %s", (RUN_ID,))
    with pytest.raises(AirflowFailException, match=f"run {re.escape(RUN_ID)} published nothing in this attempt"):
        digest.send(context())


def test_a_summary_channel_without_its_connection_is_asked_for_and_refused_naming_both(digest):
    """Review: GREENERY_SUMMARY_CHANNEL without GREENERY_SUMMARY_CONN_ID skipped the task ("the digest is off"),
    while recipients without an SMTP connection failed it: now the Slack note is asked for and refused, not retried."""
    from greenery import config
    from greenery.alerts import delivery

    settings = config.get({"GREENERY_SUMMARY_CHANNEL": "#stakeholders"})
    assert digest.wanted(settings) == ["slack"]
    with pytest.raises(delivery.SlackDeliveryError) as refused:
        digest._SENDERS["slack"](settings, {}, b"", [], {})
    assert not refused.value.retryable
    assert str(refused.value).startswith(
        "Slack note not sent: a channel is set (GREENERY_SUMMARY_CHANNEL='#stakeholders') but no Slack connection:"
        " set GREENERY_SUMMARY_CONN_ID"
    ), refused.value
    both = config.get({"GREENERY_SUMMARY_CHANNEL": "C0123", "GREENERY_SUMMARY_CONN_ID": "stakeholders"})
    assert digest.wanted(both) == ["slack", "slack-chart"] and digest.slack_settings_problem(both) is None
    assert digest.wanted(config.get({})) == []  # the control: off by default


@pytest.mark.db
def test_a_summary_channel_without_its_connection_fails_the_task_without_retries(digest, published_url, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    for name in ("GREENERY_SUMMARY_CONN_ID", "GREENERY_DIGEST_EMAIL_CONN_ID", "GREENERY_DIGEST_EMAIL_TO"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GREENERY_SUMMARY_CHANNEL", "#stakeholders")
    with pytest.raises(
        AirflowFailException, match=r"not retried .*GREENERY_SUMMARY_CHANNEL=.*GREENERY_SUMMARY_CONN_ID"
    ):
        digest.send(context())


def synthetic_points(days: int = 28) -> list[Point]:
    start = DAY - dt.timedelta(days=days - 1)
    return [
        Point(
            start + dt.timedelta(days=i),
            None if i in (3, 4) else 0.70 + 0.1 * i / days,
            None if i in (3, 4) else 0.55 + 0.002 * i,
            120 + (i * 37) % 60,
        )
        for i in range(days)
    ]


def test_the_chart_is_a_png_with_the_three_series_and_gaps_for_missing_days():
    png = chart.render_png(synthetic_points())
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert chart.render_png(synthetic_points()) == png  # deterministic: same data, same bytes
    for colour in (GREEN, BLUE, AMBER):
        assert colour_pixels(png, colour) > 500, colour
    # No data at all still renders (the panels' labels), without a line or a bar.
    empty = chart.render_png([Point(DAY, None, None, 0)])
    assert colour_pixels(empty, AMBER) < colour_pixels(png, AMBER) / 5


def hostile_stats() -> dict:
    return {
        "dag_id": "greenery_<script>alert(1)</script>",
        "logical_date": "2021-02-12\r\nBcc: thief@example.com",
        "rows": {"marts.<img src=x onerror=alert(2)>": 3, "marts.fact_orders": 361},
        "checks_passed": 249,
        "checks_evaluated": 250,
        "repeat_rate": 0.798,
        "quarantined": {"staging.<b>x</b>": 1},
        "links": {"run": "javascript:alert(3)", "quality": "https://airflow.example.com/data-quality/?run_id=a&b=1"},
        "trend": [],
    }


def test_the_email_escapes_everything_from_data_and_keeps_headers_on_one_line():
    points = synthetic_points()
    message = digest_email.build(hostile_stats(), points, chart.render_png(points), sender=SENDER, recipients=TO)
    text, html, image = parts(parse(message.as_bytes()))
    body = html.get_content()
    assert "<script>" not in body and "<img src=x" not in body and "<b>x</b>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body and "&lt;img src=x onerror=alert(2)&gt;" in body
    assert "javascript:" not in body  # not a link, not shown
    assert 'href="https://airflow.example.com/data-quality/?run_id=a&amp;b=1"' in body
    assert message["Bcc"] is None and "\n" not in message["Subject"] and "2021-02-12 Bcc" in message["Subject"]
    cid = image["Content-ID"].strip("<>")
    assert f'src="cid:{cid}"' in body and body.count("cid:") == 1
    assert "<img src=x onerror=alert(2)>" in text.get_content()  # plain text is shown as text, not markup
    assert chart.sparkline([p.repeat_rate for p in points]) in text.get_content()


def test_a_digest_of_a_run_that_checked_some_tables_says_so_wherever_it_counts_the_checks():
    """Review: a model cleared with its downstream tasks validates only what it rebuilt, and its digest said
    "10/10 checks passed" beside every mart's row count, as if every table had been checked."""
    from greenery.alerts import text as alert_text

    assert alert_text.checked_in(32, 32) == "" and alert_text.checked_in(0, 32) == ""
    scope = alert_text.checked_in(10, 32)
    assert scope.startswith(", in the 10 tables this run checked (of 32;")
    stats = {**hostile_stats(), "checks_passed": 10, "checks_evaluated": 10, "checks_scope": scope}
    payload = build_summary_message(stats)
    assert "10/10 passed, in the 10 tables this run checked (of 32;" in json.dumps(
        payload["blocks"], ensure_ascii=False
    )
    assert "10/10 checks passed, in the 10 tables this run checked (of 32;" in payload["text"]
    points = synthetic_points()
    message = digest_email.build(stats, points, chart.render_png(points), sender=SENDER, recipients=TO)
    assert message["Subject"].endswith("10/10 checks passed, in the 10 tables this run checked")
    text, html, _ = parts(parse(message.as_bytes()))
    assert "10/10, in the 10 tables this run checked (of 32;" in text.get_content()
    assert "All 10 data checks passed, in the 10 tables this run checked (of 32;" in " ".join(
        html.get_content().split()
    )


@pytest.mark.db
def test_the_digest_reads_how_many_tables_the_runs_validation_checked(digest, published_url):
    suites = [{"suite": name} for name in ("fact_orders", "dim_users")]
    stats, _ = digest.read_stats(validation_summary(suites=suites, evaluated=12))
    from greenery.project import models

    tables = len(models.discover())
    assert stats["checks_scope"].startswith(f", in the 2 tables this run checked (of {tables};"), stats["checks_scope"]

    every = [{"suite": name} for name in models.discover()]
    assert digest.read_stats(validation_summary(suites=every))[0]["checks_scope"] == ""
    # A backfill's day before the snapshot's latest step keeps the published history, checked when it was published.
    kept = validation_summary(suites=[s for s in every if s["suite"] != "snap_orders"], kept_unchecked=["snap_orders"])
    assert digest.read_stats(kept)[0]["checks_scope"] == ""


def test_direction_controls_in_the_email_show_as_their_escapes():
    """Review: the digest email left an RLO in a table name or note as it was; it reversed what followed it."""
    from greenery import bidi

    controls = "".join(bidi.CONTROLS)
    stats = {**hostile_stats(), "dag_id": f"greenery\u202e{controls}", "rows": {f"marts.t\u202e{controls}": 3}}
    stats.update(quarantined={f"staging.q\u202e{controls}": 1}, notes=[f"note\u202e{controls}"])
    message = digest_email.build(stats, synthetic_points(), b"png", sender=SENDER, recipients=TO)
    text, html, _ = parts(parse(message.as_bytes()))
    visible = "\\u202e" + "".join(f"\\u{ord(c):04x}" for c in controls)
    for part in (text.get_content(), html.get_content(), str(message["Subject"])):
        assert not set(controls) & set(part), sorted({f"U+{ord(c):04X}" for c in part if c in controls})
    for name in ("greenery", "marts.t", "staging.q", "note"):
        assert f"{name}{visible}" in text.get_content() and f"{name}{visible}" in html.get_content(), name


def test_the_slack_summary_carries_the_trend_within_slack_limits_and_escaped():
    points = synthetic_points()
    from greenery.trend import as_json

    payload = build_summary_message({**hostile_stats(), "trend": as_json(points)})
    [trend_block] = [b for b in payload["blocks"] if b.get("block_id") == "trend"]
    text = trend_block["text"]["text"]
    assert chart.sparkline([p.repeat_rate for p in points]) in text
    assert f"Repeat rate: *{points[-1].repeat_rate:.1%}*" in text
    assert "Orders per day" in text and "Jan 16 to Feb 12" in text
    assert len(payload["blocks"]) <= 50 and all(
        len(b.get("text", {}).get("text", "")) <= 3000 for b in payload["blocks"]
    )
    # mrkdwn (sections, context, the fallback text) is escaped; the header is plain_text, which Slack shows as is.
    mrkdwn = [payload["text"]] + [
        t["text"]
        for b in payload["blocks"]
        for t in [b.get("text"), *b.get("elements", [])]
        if isinstance(t, dict) and t.get("type") == "mrkdwn"
    ]
    assert not any("<script>" in m or "<img" in m for m in mrkdwn)
    assert any("&lt;img src=x onerror=alert(2)&gt;" in m for m in mrkdwn)


def test_the_slack_summary_links_to_the_run_the_view_and_the_docs_and_nothing_else():
    """README (The stakeholders' digest): the Slack note carries links to the run and the Data quality view, as
    the email does (it dropped them); only http(s) links become buttons."""
    links = {
        "run": "https://airflow.example/dags/greenery_daily/runs/r1",
        "quality": "https://airflow.example/data-quality/?run_id=r1",
        "docs": "javascript:alert(1)",
    }
    payload = build_summary_message({**hostile_stats(), "links": links})
    [buttons] = [b for b in payload["blocks"] if b["type"] == "actions"]
    assert {e["url"] for e in buttons["elements"]} == {links["run"], links["quality"]}
    assert "javascript:" not in json.dumps(payload)
    assert not [b for b in build_summary_message({**hostile_stats(), "links": {}})["blocks"] if b["type"] == "actions"]


@pytest.mark.stack
def test_the_email_html_shows_the_chart_in_a_browser(tmp_path):
    """What a mail client does: resolve cid: to the image part. Headless Chromium renders it; the screenshot has
    the chart's colours where the image is (and the image alone, shown as a file, has them too)."""
    from browser import chromium, read_png

    points = synthetic_points()
    png = chart.render_png(points)
    stats = {**hostile_stats(), "dag_id": "greenery_daily", "logical_date": DAY.isoformat()}
    _, html, image = parts(parse(digest_email.build(stats, points, png, sender=SENDER, recipients=TO).as_bytes()))
    (tmp_path / "chart.png").write_bytes(image.get_content())
    cid = image["Content-ID"].strip("<>")
    page = tmp_path / "digest.html"
    page.write_text(html.get_content().replace(f"cid:{cid}", "chart.png"))
    shot = tmp_path / "digest-shot.png"
    result = chromium(page.as_uri(), tmp_path / "profile", screenshot=shot, size=(800, 1100))
    assert shot.is_file(), result.stderr[-2000:]
    width, height, _ = read_png(shot)
    assert (width, height) == (800, 1100)
    assert colour_pixels(shot.read_bytes(), GREEN, tolerance=30) > 500
    assert colour_pixels(shot.read_bytes(), AMBER, tolerance=30) > 500


# --- the task body on the published real data --------------------------------------------------------------


@pytest.mark.db
def test_the_digest_email_goes_out_with_the_chart_inlined(digest, published_url, email_on):
    started = time.monotonic()
    digest.send(context())
    [received] = email_on.messages
    assert received.login == USER and received.mail_from == SENDER and received.rcpt_tos == list(TO)
    message = parse(received.content)
    assert message["Subject"] == "Greenery, state of the data 2021-02-12: 250/250 checks passed"
    assert message["To"] == ", ".join(TO) and message["From"] == SENDER
    text, html, image = parts(message)
    cid = image["Content-ID"].strip("<>")
    assert f'src="cid:{cid}"' in html.get_content() and image.get_content_disposition() == "inline"
    png = image.get_content()
    from PIL import Image

    with Image.open(io.BytesIO(png)) as decoded:
        assert decoded.format == "PNG" and decoded.size == (1200, 392)
    assert colour_pixels(png, GREEN) > 300 and colour_pixels(png, AMBER) > 300  # not blank: the series are drawn
    # The real data: the run of 2021-02-12 is the only day in metrics_daily; orders were placed on Feb 10 (177)
    # and Feb 11 (184); so the 28-day window ends with those two bars and today's single rate.
    repeat_rate, conversion = published_metrics(published_url)
    assert round(repeat_rate, 3) == 0.798
    body = text.get_content()
    assert "·" * 27 + "▄" in body  # repeat rate: one figure, on the last day
    assert "▁" * 25 + "██▁" in body  # orders: 177 and 184 on the 26th and 27th day, none on the 12th
    assert "(361 in 28 days)" in body  # every order of the real data was placed within the window
    for shown in (f"{repeat_rate:.1%}", f"{conversion:.1%}", "marts.fact_orders", "361"):
        assert shown in body and shown in html.get_content(), shown
    assert time.monotonic() - started < 30


@pytest.mark.db
def test_the_trend_reads_the_28_days_up_to_the_run_day(published_url):
    from greenery import trend

    with psycopg.connect(published_url, autocommit=True) as conn:
        conn.execute(
            "insert into marts.metrics_daily (as_of_date, repeat_rate, conversion_rate)"
            " values ('2021-01-16', 0.5, 0.25), ('2021-01-15', 0.1, 0.1), ('2021-02-13', 0.9, 0.9)"
        )
        points = trend.read(conn, DAY)
    assert [p.day for p in points] == [DAY - dt.timedelta(days=27 - i) for i in range(28)]
    assert (points[0].repeat_rate, points[0].conversion_rate) == (0.5, 0.25)  # Jan 16 in, Jan 15 and Feb 13 out
    assert [p.orders for p in points[-3:]] == [177, 184, 0] and sum(p.orders for p in points) == 361
    assert all(p.repeat_rate is None for p in points[1:-1])


@pytest.mark.db
@pytest.mark.parametrize(
    ("zone", "last"),
    [
        ("America/Santiago", "2024-09-20"),  # 2024-09-08 00:00 did not exist there: clocks went to 01:00
        ("Africa/Cairo", "2024-05-10"),  # 2024-04-26 00:00 neither
        ("Europe/Berlin", "2024-04-10"),  # a change at 02:00
    ],
)
def test_the_trends_days_are_the_28_up_to_the_run_day_whatever_the_warehouse_sessions_zone(
    published_url, monkeypatch, zone, last
):
    """Review: the days were a series of timestamps, stepped in the session's zone (PGTZ, the role's or the server's
    setting): where a clock change skips midnight, the digest's window lost the run's own day for 27 days, and its
    trend said the day before's rate beside the headline's."""
    from greenery import trend

    last = dt.date.fromisoformat(last)
    monkeypatch.setenv("PGTZ", zone)
    with psycopg.connect(published_url, autocommit=True) as conn:
        assert conn.execute("show timezone").fetchone()[0] == zone
        conn.execute("insert into marts.metrics_daily (as_of_date, repeat_rate) values (%s, 0.9)", (last,))
        points = trend.read(conn, last)
    assert [p.day for p in points] == [last - dt.timedelta(days=27 - i) for i in range(28)]
    assert points[-1].repeat_rate == 0.9


def unreachable_port() -> tuple[socket.socket, int]:
    """A port bound but not listening: connections to it are refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]


@pytest.mark.db
@pytest.mark.parametrize("smtp", ["starttls", "implicit"], indirect=True)
def test_the_digest_goes_over_tls_to_a_server_whose_certificate_is_checked(
    digest, published_url, email_on, monkeypatch
):
    """README: STARTTLS unless the extra disable_tls, implicit TLS (port 465) unless disable_ssl, with the provider's
    default context, which checks the certificate (review: only the failures of TLS were tested)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(Path(__file__)))  # trusting nothing: the certificate is refused
    with pytest.raises(digest.DigestNotDelivered, match=r"TLS failed.*CERTIFICATE_VERIFY_FAILED"):
        digest.send(context())
    assert email_on.messages == [] and email_on.logins == []  # no password went out before TLS
    monkeypatch.setenv("SSL_CERT_FILE", str(email_on.ca_file))  # as a deployment trusts its server's CA
    digest.send(context())
    [received] = email_on.messages
    assert received.tls and received.login == USER and received.rcpt_tos == list(TO)
    assert parse(received.content)["Subject"].startswith("Greenery, state of the data 2021-02-12")


@pytest.mark.db
@pytest.mark.parametrize("smtp", ["implicit"], indirect=True)
def test_port_465_with_the_connections_defaults_is_tls_from_the_start_without_starttls_inside_it(
    digest, published_url, email_on, monkeypatch
):
    """Review: with neither extra set (implicit TLS, and STARTTLS by the provider's default), the provider asked for
    STARTTLS inside the TLS connection; the server does not offer it there, and every try failed, retried with backoff,
    saying "STARTTLS extension not supported by server". STARTTLS is for a plain connection only."""
    monkeypatch.setenv("SSL_CERT_FILE", str(email_on.ca_file))
    settings = json.loads(email_on.conn_json())
    del settings["extra"]["disable_tls"]
    monkeypatch.setenv(conn_env_var("digest_email"), json.dumps(settings))
    digest.send(context())
    [received] = email_on.messages
    assert received.tls and received.login == USER and received.rcpt_tos == list(TO)


@pytest.mark.db
@pytest.mark.parametrize("smtp", [{"tls": "starttls", "certified": "127.0.0.2"}], indirect=True)
def test_a_trusted_certificate_for_another_address_is_refused(digest, published_url, email_on, monkeypatch):
    """The check covers the name too, not only the chain (review): a certificate the client trusts, made for
    127.0.0.2, on the server at 127.0.0.1."""
    monkeypatch.setenv("SSL_CERT_FILE", str(email_on.ca_file))
    with pytest.raises(digest.DigestNotDelivered, match=r"TLS failed.*IP address mismatch"):
        digest.send(context())
    assert email_on.messages == [] and email_on.logins == []


def _hang_up(listener: socket.socket, times: int = 3) -> None:
    """Accept and close at once, ``times`` over; the test closes ``listener`` when the digest stops trying (fewer
    times: a thread left in accept() then raised EBADF, reported as an unhandled exception of another test)."""
    with contextlib.suppress(OSError):
        for _ in range(times):
            listener.accept()[0].close()


@pytest.mark.db
@pytest.mark.parametrize(
    "problem",
    [
        "wrong password",
        "unreachable server",
        "implicit TLS against a plain server",
        "STARTTLS against a plain server",
        "refused sender",
        "a server that hangs up at once",
    ],
)
def test_bad_smtp_settings_fail_the_task_once_with_the_reason(digest, published_url, email_on, monkeypatch, problem):
    holder = None
    if problem == "a server that hangs up at once":  # review: the reason was lost ("Unable to connect to smtp server")
        holder, port = unreachable_port()
        holder.listen()
        threading.Thread(target=_hang_up, args=(holder,), daemon=True).start()
        monkeypatch.setenv(conn_env_var("digest_email"), email_on.conn_json(port=port))
        expected = "Unable to connect to smtp server (SMTPServerDisconnected: Connection unexpectedly closed"
    elif problem == "wrong password":
        monkeypatch.setenv(conn_env_var("digest_email"), email_on.conn_json(password="not-the-password"))  # noqa: S106 (fake)
        expected = f"the server refused the login of '{USER}': 535"
    elif problem == "unreachable server":
        holder, port = unreachable_port()
        monkeypatch.setenv(conn_env_var("digest_email"), email_on.conn_json(port=port))
        expected = "cannot talk to the server: ConnectionRefusedError"
    elif problem == "implicit TLS against a plain server":
        monkeypatch.setenv(conn_env_var("digest_email"), email_on.conn_json(disable_ssl=False))
        expected = "TLS failed"
    elif problem == "STARTTLS against a plain server":
        monkeypatch.setenv(conn_env_var("digest_email"), email_on.conn_json(disable_tls=False))
        expected = "cannot talk to the server: SMTPNotSupportedError: STARTTLS extension not supported by server"
    else:
        sender = f"greenery@{REFUSED_DOMAIN}"
        monkeypatch.setenv(conn_env_var("digest_email"), email_on.conn_json(from_email=sender))
        expected = f"the server refused the sender '{sender}': 553"
    started = time.monotonic()
    try:
        with pytest.raises(digest.DigestNotDelivered) as failed:
            digest.send(context())
    finally:
        if holder:
            holder.close()
    error = str(failed.value)
    assert expected in error and "'digest_email'" in error and "127.0.0.1:" in error, error
    assert "not-the-password" not in error and PASSWORD not in error
    assert email_on.messages == []
    # One connection (smtplib tries each AUTH mechanism the server offers, in it): retries are the task's.
    logged_in = problem in ("wrong password", "refused sender")  # a refused sender comes after a good login
    assert len({peer for peer, _, _ in email_on.logins}) == (1 if logged_in else 0)
    assert any(ok for _, _, ok in email_on.logins) == (problem == "refused sender")
    assert time.monotonic() - started < 15


@pytest.mark.db
def test_a_refused_recipient_fails_the_task_even_when_others_got_it(digest, published_url, email_on, monkeypatch):
    """And its retries (the task retries, then on-call clears it) do not send the others a copy each time."""
    monkeypatch.setenv("GREENERY_DIGEST_EMAIL_TO", f"ana@example.com; ghost@{REFUSED_DOMAIN}; bo@example.com")
    with pytest.raises(
        digest.DigestNotDelivered, match=rf"delivered to 2 of 3 recipients; refused: ghost@{REFUSED_DOMAIN}: 550"
    ):
        digest.send(context())
    assert [m.rcpt_tos for m in email_on.messages] == [["ana@example.com", "bo@example.com"]]
    for _ in range(2):  # the retries: the refused address only, still refused
        with pytest.raises(digest.DigestNotDelivered, match=r"the server refused every recipient: ghost@"):
            digest.send(context())
    assert len(email_on.messages) == 1
    # On-call drops the dead address and clears the task: everyone left has the email; it goes green.
    monkeypatch.setenv("GREENERY_DIGEST_EMAIL_TO", "ana@example.com; bo@example.com")
    digest.send(context())
    assert len(email_on.messages) == 1


@pytest.mark.db
def test_a_run_that_published_nothing_gets_no_digest_and_fails_at_once(digest, published_url, email_on):
    """Review: with publish marked success by hand the digest went out anyway ("the marts are published", another
    run's figures) and, recording nothing, again on every retry. Now: no retry, the reason, nothing sent."""
    from airflow.sdk.exceptions import AirflowFailException

    with psycopg.connect(published_url, autocommit=True) as conn:
        conn.execute("delete from greenery_audit.publish_log where run_id = %s", (RUN_ID,))
    with pytest.raises(AirflowFailException, match=f"run {re.escape(RUN_ID)} published nothing"):
        digest.send(context())
    assert email_on.messages == []


@pytest.mark.db
def test_a_run_without_a_validation_of_its_own_gets_no_digest_and_fails_at_once(digest, published_url, email_on):
    """Review: validate and publish marked success by hand left no summary, and the task failed on a TypeError,
    retried, paging with it; now it refuses at once, saying why and what to clear."""
    from airflow.sdk.exceptions import AirflowFailException

    unvalidated = context()
    unvalidated["ti"].xcom_pull = lambda task_ids=None, key=None: None
    with pytest.raises(AirflowFailException, match=f"run {re.escape(RUN_ID)} has no validation of its own") as err:
        digest.send(unvalidated)
    assert "Clear the whole run" in str(err.value)
    assert email_on.messages == []


@pytest.mark.db
def test_an_attempt_that_published_nothing_gets_no_digest_though_an_earlier_attempt_of_the_run_published(
    digest, published_url, email_on, monkeypatch
):
    """Review: the run published in its first attempt; cleared whole, its second attempt validated a new build (5 new
    warnings) and its publish was marked success by hand. The digest went out with that attempt's figures, which
    nobody published ("the marts are published")."""
    from airflow.sdk.exceptions import AirflowFailException

    second = validation_summary(clear_number=1, failed_warning=5, validation_id="attempt-1")
    with psycopg.connect(published_url) as conn:
        [(at,)] = conn.execute(
            "select to_char(max(published_at) at time zone 'UTC', 'YYYY-MM-DD HH24:MI') from greenery_audit.publish_log"
        ).fetchall()
    monkeypatch.setenv("PGTZ", "America/New_York")  # the warehouse session's zone: the time is still said in UTC
    with pytest.raises(AirflowFailException, match=r"published nothing in this attempt \(an earlier attempt") as err:
        digest.send(context(second))
    assert f"published, at {at} UTC)" in str(err.value), err.value
    # Its page (review): it said "The marts were published by this run ... clear state_of_the_data only" (the run's
    # publish state and record, from the first attempt), which fails again.
    from greenery.alerts.messages import build_task_failure_alert
    from greenery.tasks import paging

    marked = context(second)  # publish marked success in this attempt; the run's publish (its first) on record
    marked["ti"].dag_id, marked["ti"].run_id = "greenery_daily", RUN_ID
    marked["ti"].get_task_states = lambda dag_id, run_ids, task_ids: {RUN_ID: {"publish": "success"}}

    page = json.dumps(
        build_task_failure_alert(
            dag_id="greenery_daily",
            task_id="state_of_the_data",
            logical_date=str(DAY),
            run_id="r",
            error=str(err.value),
            log_url=None,
            links=None,
            published=paging._published(err.value, marked),
            next_step=err.value.next_step,
        ),
        ensure_ascii=False,
    )
    assert "Nothing was published by this run" in page and "Clear the whole run (Grid" in page, page
    assert "The marts were published" not in page
    assert email_on.messages == []
    digest.send(context())  # the first attempt's digest, cleared and sent again: its publish is on record
    assert len(email_on.messages) == 1


@pytest.mark.db
def test_a_digest_sent_again_after_a_later_publish_is_skipped_not_given_that_publish_counts(
    digest, published_url, email_on
):
    """Review: the digest of a run, sent again after a later run published (state_of_the_data cleared, as the
    README says after fixing SMTP), counted the later publish's rows under its own day. Not sent, with the reason;
    skipped, not failed (review: two overlapping runs, the later one publishing first, made the earlier run red and
    paged on-call with nothing to do)."""
    from airflow.sdk.exceptions import AirflowSkipException

    from greenery import audit

    with psycopg.connect(published_url, autocommit=True) as conn, conn.transaction():
        audit.record_publish(conn, "manual__later", DAY, ["marts.fact_orders"])  # the same day, published again
    with pytest.raises(AirflowSkipException, match="the marts now hold the publish of run manual__later") as skip:
        digest.send(context())
    assert "the digest of run manual__later reports the marts readers see" in str(skip.value)
    assert "an earlier attempt delivered" not in str(skip.value)
    assert email_on.messages == []


@pytest.mark.db
def test_a_run_of_a_day_earlier_than_one_published_sends_no_digest(digest, published_url, email_on):
    """Review: `greenery run` over a range ending at the latest day (the raw-changed warning's command), or a manual
    run of an old day, mailed the stakeholders each earlier day as the state of the data, after the latest day's
    digest. A later day published already: skipped, saying so; an earlier one published: sent (the control)."""
    from airflow.sdk.exceptions import AirflowSkipException

    from greenery import audit

    with psycopg.connect(published_url, autocommit=True) as conn, conn.transaction():
        audit.record_publish(conn, "scheduled__before", DAY - dt.timedelta(days=1), ["marts.fact_orders"])
    with psycopg.connect(published_url, autocommit=True) as conn, conn.transaction():
        audit.record_publish(conn, RUN_ID, DAY, ["marts.fact_orders"])  # this run's, published last
    digest.send(context())
    assert len(email_on.messages) == 1
    with psycopg.connect(published_url, autocommit=True) as conn, conn.transaction():
        audit.record_publish(conn, "scheduled__later", DAY + dt.timedelta(days=1), ["marts.fact_orders"])
        audit.record_publish(conn, RUN_ID, DAY, ["marts.fact_orders"])  # replayed after it: the latest publish
    with pytest.raises(AirflowSkipException, match=f"{DAY + dt.timedelta(days=1)} is published already") as skip:
        digest.send(context())
    assert f"a later day than this run's {DAY} (a replay of earlier days)" in str(skip.value), skip.value
    assert len(email_on.messages) == 1


@pytest.mark.db
def test_a_backfill_run_sends_no_digest_and_says_why(digest, published_url, email_on):
    """Review: a backfill of a year mailed the stakeholders 365 digests (and a backfill reprocessing it, 365 more)."""
    from airflow.sdk.exceptions import AirflowSkipException

    def run_of(kind: str) -> dict:
        return {**context(), "dag_run": type("DagRun", (), {"run_type": kind})()}

    with pytest.raises(AirflowSkipException, match="a backfill run sends no digest") as skip:
        digest.send(run_of("backfill"))
    assert "the next scheduled run's digest shows the last 28 days" in str(skip.value)
    assert email_on.messages == []
    digest.send(run_of("scheduled"))  # the control: the same run, scheduled, sends it
    assert len(email_on.messages) == 1


@pytest.mark.db
def test_a_skip_after_a_later_publish_says_what_an_earlier_attempt_delivered(
    digest, published_url, email_on, slack_server, monkeypatch
):
    """Review: the Slack note went out, the email failed (a rotated password); the task, cleared after a later run
    published, skipped saying "no digest ... is sent"."""
    from airflow.sdk.exceptions import AirflowSkipException

    from greenery import audit

    monkeypatch.setenv(conn_env_var("stakeholders"), slack_server.webhook_conn_json())
    monkeypatch.setenv("GREENERY_SUMMARY_CONN_ID", "stakeholders")
    monkeypatch.setenv(conn_env_var("digest_email"), email_on.conn_json(password="rotated"))  # noqa: S106 (fake)
    with pytest.raises(digest.DigestNotDelivered):
        digest.send(context())
    with psycopg.connect(published_url, autocommit=True) as conn, conn.transaction():
        audit.record_publish(conn, "scheduled__later", DAY + dt.timedelta(days=1), ["marts.fact_orders"])
    monkeypatch.setenv(conn_env_var("digest_email"), email_on.conn_json())  # the password fixed, the task cleared
    with pytest.raises(AirflowSkipException) as skip:
        digest.send(context())
    assert "(an earlier attempt delivered: the Slack note; the rest is not sent)" in str(skip.value), skip.value
    assert email_on.messages == [] and len(slack_server.webhook_posts()) == 1


@pytest.mark.db
def test_a_note_that_went_out_unanswered_is_not_retried_into_a_second_post(
    digest, published_url, slack_server, monkeypatch
):
    """Review: Slack took the stakeholders' note and hung up; the task's retry posted it again."""
    from airflow.sdk.exceptions import AirflowFailException

    monkeypatch.setenv(conn_env_var("stakeholders"), slack_server.webhook_conn_json())
    monkeypatch.setenv("GREENERY_SUMMARY_CONN_ID", "stakeholders")
    slack_server.respond(200, drop=True)
    with pytest.raises(AirflowFailException, match="may have been delivered, so the task is not retried"):
        digest.send(context())
    assert len(slack_server.webhook_posts()) == 1


@pytest.mark.db
@pytest.mark.parametrize("email_refused", [False, True], ids=["the email goes", "the email is refused"])
def test_a_part_delivered_but_not_recorded_is_not_sent_again_by_a_retry(
    digest, published_url, slack_server, email_on, monkeypatch, email_refused
):
    """Review: the warehouse failed just after the stakeholders' note went out; the task failed on the record with
    a bare OSError, never tried the email, and its retry posted the note a second time. Now the other parts go; the
    task ends without a retry, saying what went out and what is missing."""
    from airflow.sdk.exceptions import AirflowFailException

    from greenery import audit

    monkeypatch.setenv(conn_env_var("stakeholders"), slack_server.webhook_conn_json())
    monkeypatch.setenv("GREENERY_SUMMARY_CONN_ID", "stakeholders")
    record = audit.record_digest

    def warehouse_blinks(conn, run_id, part, published_at, detail):
        if part == "slack":
            raise OSError("server closed the connection unexpectedly")
        record(conn, run_id, part, published_at, detail)

    monkeypatch.setattr(audit, "record_digest", warehouse_blinks)
    if email_refused:
        sock, port = unreachable_port()
        monkeypatch.setenv(conn_env_var("digest_email"), email_on.conn_json(port=port))
        with sock, pytest.raises(AirflowFailException, match=r"slack delivered but not recorded .* not retried"):
            digest.send(context())
    else:
        digest.send(context())  # no retry follows a success
        assert len(email_on.messages) == 1, "the email went too"
    assert len(slack_server.webhook_posts()) == 1


@pytest.mark.db
def test_the_figures_are_read_while_no_publish_can_swap_the_marts(digest, published_url):
    """Review: the digest's counts were separate statements over the live marts, so another run's publish between
    them (overlapping runs) mixed two publishes under one day. They are read under the shared publish lock: a
    publish holding the exclusive one holds the digest back until it is done."""
    import threading

    from greenery import locks

    read = threading.Event()
    with psycopg.connect(published_url) as publishing:
        locks.exclusive(publishing)  # a publish under way (its transaction stays open)
        reader = threading.Thread(target=lambda: (digest.read_stats(validation_summary()), read.set()))
        reader.start()
        assert not read.wait(1.0), "the figures were read while a publish held the marts"
    reader.join(30)
    assert read.is_set()


@pytest.mark.db
def test_a_refused_only_recipient_is_tried_once(digest, published_url, email_on, monkeypatch):
    """SmtpHook.send_email_smtp would send 5 more times (retry_limit) to a mailbox that does not exist."""
    monkeypatch.setenv("GREENERY_DIGEST_EMAIL_TO", f"ghost@{REFUSED_DOMAIN}")
    with pytest.raises(digest.DigestNotDelivered, match=r"the server refused every recipient: ghost@.*: 550 5\.1\.1"):
        digest.send(context())
    assert email_on.rcpts == [f"ghost@{REFUSED_DOMAIN}"] and email_on.messages == []


@pytest.mark.db
def test_an_email_the_server_took_without_answering_is_not_retried_into_a_second_copy(
    digest, published_url, email_on, monkeypatch
):
    """Review: the server stored the message, and its answer to it came after the connection's timeout (a content
    scanner, a dropped link): the task failed as retryable, "email not sent", and its retry mailed everyone again."""
    from airflow.sdk.exceptions import AirflowFailException

    monkeypatch.setenv(conn_env_var("digest_email"), email_on.conn_json(timeout=1))
    email_on.answer_data_after(3)
    with pytest.raises(AirflowFailException) as failed:
        digest.send(context())
    said = str(failed.value)
    assert "email went out unconfirmed" in said and "may have been delivered, so the task is not retried" in said
    assert "look in a recipient's inbox" in said and "may have been delivered: the connection was lost" in said
    assert [m.rcpt_tos for m in email_on.messages] == [list(TO)]


@pytest.mark.db
@pytest.mark.parametrize("smtp", ["implicit"], indirect=True)
def test_tls_breaking_while_the_server_takes_the_email_is_maybe_delivered_not_retried(
    digest, published_url, email_on, monkeypatch
):
    """Review: a TLS error once the message was under way (a bad record, the link cut mid-record) was reported as
    "TLS failed", retryable, before the check that the message had gone: the retry could mail everyone again."""
    import smtplib
    import ssl

    from airflow.sdk.exceptions import AirflowFailException

    monkeypatch.setenv("SSL_CERT_FILE", str(email_on.ca_file))
    data = smtplib.SMTP.data

    def taken_then_tls_broke(self, msg):
        data(self, msg)
        raise ssl.SSLError(1, "[SSL: DECRYPTION_FAILED_OR_BAD_RECORD_MAC] decryption failed or bad record mac")

    monkeypatch.setattr(smtplib.SMTP, "data", taken_then_tls_broke)
    with pytest.raises(AirflowFailException) as failed:
        digest.send(context())
    said = str(failed.value)
    assert "may have been delivered, so the task is not retried" in said and "SSLError" in said, said
    assert "TLS failed" not in said, said
    assert [m.rcpt_tos for m in email_on.messages] == [list(TO)]


@pytest.mark.db
def test_a_sender_with_a_display_name_is_the_messages_from(digest, published_url, email_on, monkeypatch):
    """Review: from_email "Greenery Data <greenery@example.com>", a form Airflow's email settings take, failed the task
    ("names no valid sender") and paged."""
    monkeypatch.setenv(conn_env_var("digest_email"), email_on.conn_json(from_email="Greenery Data <data@example.com>"))
    digest.send(context())
    [received] = email_on.messages
    headers = email.message_from_bytes(received.content)
    assert received.mail_from == "data@example.com" and headers["From"] == "Greenery Data <data@example.com>"
    assert headers["Message-ID"].endswith("@example.com>")


@pytest.mark.db
def test_a_recipient_listed_twice_or_in_another_case_gets_one_copy(digest, published_url, email_on, monkeypatch):
    """Review: an address listed twice, or again in capitals, got the digest once per listing; and a retry after a
    refusal, with the address written in another case, sent a second copy."""
    monkeypatch.setenv("GREENERY_DIGEST_EMAIL_TO", "ana@example.com, bo@example.com, Ana@Example.com, ana@example.com")
    digest.send(context())
    assert [m.rcpt_tos for m in email_on.messages] == [["ana@example.com", "bo@example.com"]]


@pytest.mark.db
def test_a_retry_writing_a_delivered_address_in_another_case_sends_it_nothing(
    digest, published_url, email_on, monkeypatch
):
    monkeypatch.setenv("GREENERY_DIGEST_EMAIL_TO", f"Ana@Example.com; ghost@{REFUSED_DOMAIN}")
    with pytest.raises(digest.DigestNotDelivered):
        digest.send(context())
    monkeypatch.setenv("GREENERY_DIGEST_EMAIL_TO", "ana@example.com")  # the refused one dropped, the case changed
    digest.send(context())
    assert [m.rcpt_tos for m in email_on.messages] == [["Ana@Example.com"]]


@pytest.mark.db
@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"GREENERY_DIGEST_EMAIL_CONN_ID": None}, "no SMTP connection: set GREENERY_DIGEST_EMAIL_CONN_ID"),
        ({"GREENERY_DIGEST_EMAIL_TO": None}, "no recipient: set GREENERY_DIGEST_EMAIL_TO"),
        ({"GREENERY_DIGEST_EMAIL_TO": "ana@example.com, not an address"}, "malformed address(es): 'not an address'"),
        ({"GREENERY_DIGEST_EMAIL_TO": "ana@example..com"}, "malformed address(es): 'ana@example..com'"),
        ({"GREENERY_DIGEST_EMAIL_TO": "ana@example.com\u202e"}, "malformed address(es): 'ana@example.com\\u202e'"),
        ({"GREENERY_DIGEST_EMAIL_CONN_ID": "nope"}, "SMTP connection 'nope' is not defined"),
        ({"from_email": ""}, "SMTP connection 'digest_email' names no valid sender: set its extra from_email"),
        ({"host": ""}, "SMTP connection 'digest_email' (?:"),  # the port it would have used, and no host
    ],
)
def test_incomplete_email_settings_fail_and_say_which(digest, published_url, email_on, monkeypatch, settings, expected):
    """And fail at once, as the Slack ones do (review: retried with backoff, minutes of tries that could not succeed;
    an unreachable server or a refused login still is: test_bad_smtp_settings_fail_the_task_once_with_the_reason)."""
    from airflow.sdk.exceptions import AirflowFailException

    for name, value in settings.items():
        if name == "from_email":  # the connection's extra
            monkeypatch.setenv(conn_env_var("digest_email"), email_on.conn_json(from_email=value))
        elif name == "host":  # the connection's own
            hostless = {**json.loads(email_on.conn_json()), name: value}
            monkeypatch.setenv(conn_env_var("digest_email"), json.dumps(hostless))
        elif value is None:
            monkeypatch.delenv(name)
        else:
            monkeypatch.setenv(name, value)
    with pytest.raises(AirflowFailException) as failed:
        digest.send(context())
    said = str(failed.value)
    assert expected in said and "not retried (retrying cannot fix a connection's settings)" in said, said
    if "host" in settings:
        assert "the connection has no host" in said, said
    assert email_on.messages == []


@pytest.mark.db
def test_an_api_token_slack_connection_gets_the_note_and_then_the_chart(
    digest, published_url, slack_server, monkeypatch
):
    for name in ("GREENERY_DIGEST_EMAIL_CONN_ID", "GREENERY_DIGEST_EMAIL_TO"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(conn_env_var("stakeholders"), slack_server.api_conn_json())
    monkeypatch.setenv("GREENERY_SUMMARY_CONN_ID", "stakeholders")
    monkeypatch.setenv("GREENERY_SUMMARY_CHANNEL", "#stakeholders")
    digest.send(context())
    methods = [r.api_method for r in slack_server.api_calls()]
    assert methods == ["chat.postMessage", "files.getUploadURLExternal", "files.completeUploadExternal"]
    [note] = slack_server.api_calls("chat.postMessage")
    [trend_block] = [b for b in note.body["blocks"] if b.get("block_id") == "trend"]
    assert "·" * 27 + "▄" in trend_block["text"]["text"]
    [upload] = slack_server.uploads()
    assert upload.raw.startswith(b"\x89PNG") and colour_pixels(upload.raw, GREEN) > 300
    [done] = slack_server.api_calls("files.completeUploadExternal")
    assert done.body["channel_id"] == "#stakeholders"  # the channel chat.postMessage answered with
    assert "repeat rate" in done.body["initial_comment"]


@pytest.mark.db
def test_a_chart_slack_took_unanswered_is_not_retried_one_refused_before_sharing_is(
    digest, published_url, slack_server, monkeypatch
):
    """Review: Slack took files.completeUploadExternal (the step that shares the chart) and hung up; the upload's
    error did not say it may have gone out, so the task's retry posted the chart a second time."""
    from airflow.sdk.exceptions import AirflowFailException

    for name in ("GREENERY_DIGEST_EMAIL_CONN_ID", "GREENERY_DIGEST_EMAIL_TO"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(conn_env_var("stakeholders"), slack_server.api_conn_json())
    monkeypatch.setenv("GREENERY_SUMMARY_CONN_ID", "stakeholders")
    monkeypatch.setenv("GREENERY_SUMMARY_CHANNEL", "#stakeholders")
    # chat.postMessage, files.getUploadURLExternal and the bytes answer; completeUploadExternal gets no answer.
    slack_server.respond(times=3)
    slack_server.respond(200, drop=True)
    with pytest.raises(AirflowFailException, match="slack-chart went out unconfirmed"):
        digest.send(context())
    assert len(slack_server.api_calls("files.completeUploadExternal")) == 1
    # A drop before the file was shared (the upload URL asked for) posted nothing: that stays worth a retry.
    slack_server.reset()
    slack_server.respond(200, drop=True)
    with pytest.raises(digest.DigestNotDelivered, match="slack-chart"):
        digest.send(context())
    assert slack_server.api_calls("files.completeUploadExternal") == []


@pytest.mark.db
def test_a_slack_configuration_error_fails_the_digest_without_retries(digest, published_url, slack_server, monkeypatch):
    """Review: an unknown channel (Slack answers ok: false, channel_not_found) failed the task with a retryable error:
    three more tries, each refused the same way, before anyone saw the red."""
    from airflow.sdk.exceptions import AirflowFailException

    for name in ("GREENERY_DIGEST_EMAIL_CONN_ID", "GREENERY_DIGEST_EMAIL_TO"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(conn_env_var("stakeholders"), slack_server.api_conn_json())
    monkeypatch.setenv("GREENERY_SUMMARY_CONN_ID", "stakeholders")
    monkeypatch.setenv("GREENERY_SUMMARY_CHANNEL", "#gone")
    slack_server.respond(200, {"ok": False, "error": "channel_not_found"}, times=2)
    with pytest.raises(AirflowFailException, match=r"not retried .*correct them.*channel_not_found"):
        digest.send(context())
    # Slack failing (5xx) is still worth the task's retries.
    slack_server.reset()
    slack_server.respond(503, "busy", times=2)
    with pytest.raises(digest.DigestNotDelivered, match="HTTP 503"):
        digest.send(context())


@pytest.mark.db
def test_a_webhook_gets_the_sparklines_only_and_a_retry_resends_only_what_failed(
    digest, published_url, email_on, slack_server, monkeypatch
):
    monkeypatch.setenv(conn_env_var("stakeholders"), slack_server.webhook_conn_json())
    monkeypatch.setenv("GREENERY_SUMMARY_CONN_ID", "stakeholders")
    monkeypatch.setenv(conn_env_var("digest_email"), email_on.conn_json(password="rotated"))  # noqa: S106 (fake)
    # First try: Slack goes out (sparklines only: a webhook takes no image), the email fails, the task fails.
    with pytest.raises(digest.DigestNotDelivered, match=r"\(delivered: slack\): email: .* refused the login"):
        digest.send(context())
    assert len(slack_server.webhook_posts()) == 1 and slack_server.uploads() == []
    # A retry that fails again says what the first attempt delivered (review: it read as nothing delivered).
    with pytest.raises(digest.DigestNotDelivered, match=r"\(delivered by an earlier attempt: slack\): email: "):
        digest.send(context())
    assert len(slack_server.webhook_posts()) == 1
    # The retry, or the task cleared after the password is fixed: only the email goes out; people in Slack do
    # not get the note twice.
    monkeypatch.setenv(conn_env_var("digest_email"), email_on.conn_json())
    digest.send(context())
    assert len(slack_server.webhook_posts()) == 1 and len(email_on.messages) == 1
    digest.send(context())  # everything went out for this publish: nothing again
    assert len(slack_server.webhook_posts()) == 1 and len(email_on.messages) == 1
    # The run published again (its whole run cleared): new marts, a new digest.
    time.sleep(0.01)
    publish(published_url)
    digest.send(context())
    assert len(slack_server.webhook_posts()) == 2 and len(email_on.messages) == 2


# --- the whole DAG through Airflow ------------------------------------------------------------------------


@pytest.mark.db
@pytest.mark.integration
def test_a_dag_run_sends_the_digest_by_email_and_to_slack(
    airflow_dag, warehouse_url, real_greenery, slack_alerts_webhook, email_on, monkeypatch
):
    from greenery.checks import suites
    from greenery.dev import local_airflow
    from greenery.project import models
    from greenery.sources import load as raw

    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        raw.load_dir(conn, real_greenery)
    monkeypatch.setenv(conn_env_var("stakeholders"), slack_alerts_webhook.webhook_conn_json())
    monkeypatch.setenv("GREENERY_SUMMARY_CONN_ID", "stakeholders")
    dag_run = local_airflow.run_day(DAY, dag=airflow_dag)
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert dag_run.state == "success" and states["state_of_the_data"] == "success", states
    [received] = email_on.messages
    text, html, image = parts(parse(received.content))
    assert f'src="cid:{image["Content-ID"].strip("<>")}"' in html.get_content()
    assert colour_pixels(image.get_content(), GREEN) > 300
    assert "79.8%" in text.get_content() and "▁" * 25 + "██▁" in text.get_content()
    assert received.rcpt_tos == list(TO)
    [note] = slack_alerts_webhook.webhook_posts()
    assert any(b.get("block_id") == "trend" for b in note.body["blocks"])
    # The Slack note's figures: rows per mart, the repeat rate, every check of every suite passed.
    note_text = json.dumps(note.body)
    assert "marts.fact_orders" in note_text and "361" in note_text and "79.8" in note_text
    n = sum(len(suite.expectations) for suite in suites.load_suites(models.discover()).values())
    assert f"{n:,}/{n:,} passed" in note_text
    # The anomaly checks pass until there are 7 days of history (one day here): counted as passed, said apart, as
    # the Data quality view lists them apart (review: the digest said only "all passed").
    history = "For information:* too little history for the anomaly checks"
    assert history in note_text and "For information: too little history" in text.get_content()
    assert "For information: too little history" in html.get_content()
    with psycopg.connect(warehouse_url) as conn:
        sent = conn.execute("select part from greenery_audit.digests_sent order by sent_at").fetchall()
    assert sent == [("slack",), ("email",)]  # recorded against the run's publish (the chart needs an API token)


@pytest.mark.db
@pytest.mark.integration
def test_a_digest_failing_after_the_publish_pages_that_the_marts_were_published(
    airflow_dag, warehouse_url, real_greenery, slack_alerts_webhook, email_on, monkeypatch
):
    """The failure callback of a task after publish, in a real DAG run: the page says the run published and to
    clear that task only (a whole-run clear would publish and send the digest again); over the task's tries the
    recipient the server took got the email once."""
    from greenery.dev import local_airflow
    from greenery.sources import load as raw

    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        raw.load_dir(conn, real_greenery)
    monkeypatch.setenv("GREENERY_DIGEST_EMAIL_TO", f"ana@example.com; ghost@{REFUSED_DOMAIN}")
    dag_run = local_airflow.run_day(DAY, dag=airflow_dag)
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert (states["publish"], states["state_of_the_data"]) == ("success", "failed"), states
    [page] = slack_alerts_webhook.webhook_posts()
    body = json.dumps(page.body, ensure_ascii=False)
    assert "task state_of_the_data failed" in body and f"ghost@{REFUSED_DOMAIN}" in body
    assert (
        "The marts were published by this run." in body
        and "clear `state_of_the_data` (with its downstream tasks" in body
    )
    assert [m.rcpt_tos for m in email_on.messages] == [["ana@example.com"]]


def test_the_email_names_the_rules_each_tables_quarantined_rows_broke_most_rows_first():
    """The Slack digest said which rules a table's quarantined rows broke; the email said only how many rows (review).
    Both parts now name them as Slack does: most rows first, four at most, and a rule's text on one line, escaped."""
    stats = {
        **hostile_stats(),
        "quarantined": {"staging.stg_postgres__orders": 7, "staging.stg_postgres__users": 1},
        "quarantined_rules": {
            "staging.stg_postgres__orders": {
                "a\nBcc: x <b>y</b>": 1,
                "null_key": 3,
                "future_timestamp": 2,
                "b": 1,
                "c": 0,
            },
            "staging.stg_postgres__users": {"orphan_user": 1},
        },
    }
    message = digest_email.build(stats, synthetic_points(), b"png", sender=SENDER, recipients=TO)
    text, html, _ = parts(parse(message.as_bytes()))
    ranked = "null_key 3, future_timestamp 2, a Bcc: x <b>y</b> 1, b 1, … 1 more"
    [orders] = [line for line in text.get_content().splitlines() if "stg_postgres__orders" in line]
    assert orders.endswith(f"7  ({ranked})"), orders
    assert "stg_postgres__users" in text.get_content() and "(orphan_user 1)" in text.get_content()
    body = html.get_content()
    assert ranked.replace("<", "&lt;").replace(">", "&gt;") in body and "<b>y</b>" not in body


def test_a_login_in_airflows_base_url_reaches_no_link_of_the_digest(monkeypatch):
    """Review: with AIRFLOW__API__BASE_URL carrying a login, the email to the stakeholders printed the password in
    every link, text and HTML (the Slack note's buttons stripped it). links.base_url strips it for every channel."""
    from greenery import links

    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://ops:S3cretPw@airflow.example.com")
    stats = {**hostile_stats(), "links": links.for_run("scheduled__2021-02-12T00:00:00+00:00")}
    points = synthetic_points()
    message = digest_email.build(stats, points, chart.render_png(points), sender=SENDER, recipients=TO)
    text, html, _ = parts(parse(message.as_bytes()))
    for body in (text.get_content(), html.get_content(), json.dumps(build_summary_message(stats))):
        assert "S3cretPw" not in body and "ops@" not in body, body
    assert "https://airflow.example.com/dags/greenery_daily/runs/scheduled__2021-02-12" in text.get_content()
