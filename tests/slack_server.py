"""A fake Slack for tests: a real HTTP server on 127.0.0.1 that records what it receives.

A pytest plugin (tests/conftest.py registers it), so every test module has its fixtures without importing them:
- ``slack_server``: a running ``FakeSlack``, stopped after the test;
- ``slack_alerts_webhook``: the same server, with the Airflow connection ``slack_alerts`` (the DAG's on-call
  alerts) pointed at its webhook for the test.
``FakeSlack`` also works directly as a context manager (e.g. around a subprocess).

- Incoming Webhooks: ``POST <url>/services/...`` answers 200 ``ok`` (``webhook_url``; ``webhook_conn_json()``
  is the AIRFLOW_CONN_* value of a connection to it).
- Web API: ``POST <url>/api/<method>`` answers ``{"ok": true, ...}``; ``chat.postMessage`` echoes the
  channel with ``ts`` "1.1" (``api_base_url``, ``api_conn_json()``). File uploads as ``files_upload_v2``
  makes them: ``files.getUploadURLExternal`` hands out ``<url>/upload/v1/<file id>``, where the bytes are
  POSTed (``uploads()``), and ``files.completeUploadExternal`` shares them.
- ``respond(500)``, ``respond(429, headers={"Retry-After": "1"})``, ``respond(200, {"ok": False, ...})``:
  queue the next answers (FIFO); the default answers apply when the queue is empty.
- ``respond(drop=True)``: hang up without answering (a flaky network, as the client sees it); ``respond(raw=b"...")``:
  send those bytes, then hang up (an answer cut short or garbled).
- ``requests`` lists every request (``Recorded``: method, path, headers, raw body, parsed ``body``).
- ``unreachable_url()``: an http URL on a reserved port nothing listens on (connection refused).

The webhook path contains ``WEBHOOK_SECRET`` so tests can check that it leaks nowhere.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import pytest

WEBHOOK_SECRET = "XsEcReTwEbHoOkToKeN42"  # noqa: S105 (fake)
WEBHOOK_PATH = f"/services/T0FAKE00/B0FAKE00/{WEBHOOK_SECRET}"
API_TOKEN = "xoxb-0000-1111-fAkEtOkEnSeCrEt"  # noqa: S105 (fake)
UPLOAD_PATH = "/upload/v1/"
FILE_ID = "F0FAKE0001"

_WEBHOOK_ERRORS = {
    400: "invalid_payload",
    403: "invalid_token",
    404: "no_service",
    410: "channel_is_archived",
    429: "rate_limited",
    500: "internal_error",
}


def conn_env_var(conn_id: str) -> str:
    """The environment variable Airflow reads connection ``conn_id`` from."""
    return f"AIRFLOW_CONN_{conn_id.upper()}"


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    body: Any  # parsed JSON, a dict for form posts, else the decoded text

    @property
    def api_method(self) -> str | None:
        return self.path.split("?")[0].removeprefix("/api/") if self.path.startswith("/api/") else None


@dataclass
class Response:
    status: int = 200
    body: Any = None  # str/bytes sent as is, anything else as JSON; None: a default for the status and path
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False  # close the connection without answering (the client sees RemoteDisconnected)
    raw: bytes | None = None  # these bytes instead of an HTTP answer, then close (an answer cut short or garbled)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up before its answer (its own timeout, during ``respond(delay=...)``) is what such a
        test plays; printing that traceback from this thread is noise, and on CPython < 3.11.8 it races
        ``ast.parse`` in the test's own thread (gh-106905). Anything else is still printed."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class FakeSlack:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._responses: deque[Response] = deque()
        self._lock = threading.Lock()
        self._reserved: list[socket.socket] = []
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-slack", daemon=True
        )
        self._thread.start()

    # --- addresses and Airflow connections ---------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def webhook_url(self) -> str:
        return self.url + WEBHOOK_PATH

    @property
    def api_base_url(self) -> str:
        return self.url + "/api/"  # slack_sdk joins method names onto it: keep the trailing slash

    def webhook_conn_json(self, url: str | None = None, **extra: Any) -> str:
        """AIRFLOW_CONN_* value of an Incoming Webhook connection whose password is the full URL."""
        conn: dict[str, Any] = {"conn_type": "slackwebhook", "password": url or self.webhook_url}
        if extra:
            conn["extra"] = extra
        return json.dumps(conn)

    def api_conn_json(self, token: str = API_TOKEN, base_url: str | None = None, **extra: Any) -> str:
        """AIRFLOW_CONN_* value of a Slack API (token) connection whose base_url is this server."""
        return json.dumps(
            {"conn_type": "slack", "password": token, "extra": {"base_url": base_url or self.api_base_url, **extra}}
        )

    def unreachable_url(self, path: str = WEBHOOK_PATH) -> str:
        """A URL on a port that is bound but not listening (refused) for as long as this server lives."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._reserved.append(sock)
        return f"http://127.0.0.1:{sock.getsockname()[1]}{path}"

    # --- behaviour and records ---------------------------------------------------------------------------

    def respond(
        self,
        status: int = 200,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
        drop: bool = False,
        raw: bytes | None = None,
        times: int = 1,
    ) -> None:
        """Queue the next ``times`` answers."""
        with self._lock:
            self._responses.extend(Response(status, body, dict(headers or {}), delay, drop, raw) for _ in range(times))

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._responses.clear()

    @property
    def last(self) -> Recorded:
        assert self.requests, "the fake Slack received no request"
        return self.requests[-1]

    def webhook_posts(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.startswith("/services/")]

    def uploads(self) -> list[Recorded]:
        """The file contents POSTed to the upload URLs that files.getUploadURLExternal handed out."""
        return [r for r in self.requests if r.path.startswith(UPLOAD_PATH)]

    def api_calls(self, method: str | None = None) -> list[Recorded]:
        return [r for r in self.requests if r.api_method and (method is None or r.api_method == method)]

    def wait_for(self, count: int = 1, timeout: float = 5.0) -> list[Recorded]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.requests)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        for sock in self._reserved:
            sock.close()

    def __enter__(self) -> FakeSlack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- HTTP ------------------------------------------------------------------------------------------

    def _next_response(self, path: str, body: Any) -> Response:
        with self._lock:
            queued = self._responses.popleft() if self._responses else None
        response = queued or Response()
        if response.body is None:
            if path.startswith("/api/"):
                response.body = self._default_api_body(path, body, response.status)
            else:
                response.body = "ok" if response.status == 200 else _WEBHOOK_ERRORS.get(response.status, "error")
        return response

    def _default_api_body(self, path: str, body: Any, status: int) -> dict:
        if status != 200:
            return {"ok": False, "error": _WEBHOOK_ERRORS.get(status, "error")}
        method = path.split("?")[0].removeprefix("/api/")
        if method == "chat.postMessage":
            channel = body.get("channel") if isinstance(body, dict) else None
            return {"ok": True, "channel": channel, "ts": "1.1", "message": {"text": (body or {}).get("text")}}
        if method == "files.getUploadURLExternal":
            return {"ok": True, "upload_url": f"{self.url}{UPLOAD_PATH}{FILE_ID}", "file_id": FILE_ID}
        if method == "files.completeUploadExternal":
            files = json.loads(body.get("files") or "[]") if isinstance(body, dict) else []
            return {"ok": True, "files": [{"id": f.get("id"), "title": f.get("title")} for f in files]}
        return {"ok": True}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _handle(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                content_type = self.headers.get("Content-Type", "")
                text = raw.decode("utf-8", errors="replace")
                body: Any = text
                if "json" in content_type:
                    with contextlib.suppress(ValueError):
                        body = json.loads(text)
                elif "x-www-form-urlencoded" in content_type:
                    body = dict(parse_qsl(text))
                with fake._lock:
                    fake.requests.append(Recorded(self.command, self.path, dict(self.headers.items()), raw, body))

                response = fake._next_response(self.path, body)
                if response.delay:
                    time.sleep(response.delay)
                if response.drop or response.raw is not None:
                    self.wfile.write(response.raw or b"")
                    self.close_connection = True
                    return
                if isinstance(response.body, bytes | str):
                    payload = response.body.encode() if isinstance(response.body, str) else response.body
                    ctype = "text/plain; charset=utf-8"
                else:
                    payload = json.dumps(response.body).encode()
                    ctype = "application/json; charset=utf-8"
                self.send_response(response.status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_POST = _handle
            do_GET = _handle

        return Handler


@pytest.fixture
def slack_server():
    """A running FakeSlack, stopped after the test."""
    with FakeSlack() as server:
        yield server


@pytest.fixture
def slack_alerts_webhook(slack_server, monkeypatch):
    """``slack_server``, with the Airflow connection ``slack_alerts`` pointed at its webhook for the test."""
    monkeypatch.setenv(conn_env_var("slack_alerts"), slack_server.webhook_conn_json())
    return slack_server


@pytest.fixture(scope="module")
def module_slack_alerts_webhook():
    """Like ``slack_alerts_webhook``, one server for a module (for one DAG run that several tests read)."""
    with FakeSlack() as server, pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv(conn_env_var("slack_alerts"), server.webhook_conn_json())
        yield server
