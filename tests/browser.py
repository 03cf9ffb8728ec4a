"""A real ``airflow api-server`` with the project's plugins, headless Chromium, and a beacon server that
records every request a page makes to it (for tests of what a browser does with the view's pages)."""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from greenery import preloaded_airflow

PROJECT_DIR = Path(__file__).resolve().parent.parent
PLUGINS_DIR = PROJECT_DIR / "plugins"
CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser")) if p), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 10, headers: dict[str, str] | None = None) -> tuple[int, str]:
    try:
        request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - a local test server
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - a local test server
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@contextlib.contextmanager
def api_server(
    tmp_path: Path,
    airflow_db: Path,
    users: dict[str, str] | None = None,
    settings: dict[str, str] | None = None,
):
    """`airflow api-server` on a free port: a copy of ``airflow_db`` (the session's migrated SQLite metadata
    database, conftest's ``migrated_airflow_db``) in a fresh home, the project's plugins.

    It reads the warehouse connection from this process's environment (the Data Docs too: they are in the
    warehouse), plus ``settings`` (more environment variables). Everyone is an admin without logging in,
    unless ``users`` ({name: password}, role viewer) must log in. Yields (base URL, port).
    """
    home = tmp_path / "airflow-home"
    (home / "dags").mkdir(parents=True)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS_DIR),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__API_AUTH__JWT_SECRET": "test-secret-" + os.urandom(8).hex(),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        **(settings or {}),
    }
    if users:
        passwords = home / "passwords.json"
        passwords.write_text(json.dumps(users))
        env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] = "False"
        env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = ",".join(f"{name}:viewer" for name in users)
        env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] = str(passwords)
    # As greenery ui starts it: through greenery-airflow (the collector's thresholds; no GX import for an api-server).
    airflow = preloaded_airflow.beside(str(Path(sys.executable).with_name("airflow")))
    shutil.copyfile(airflow_db, home / "airflow.db")
    port = free_port()
    log_path = tmp_path / "api-server.log"
    log = log_path.open("wb")
    server = subprocess.Popen(
        # No task runs against this server: without the Task Execution API (its versioned routes) it starts on
        # 7.3-8.0 s of CPU instead of 8.6-9.8 s (2026-12-01, two starts each).
        [airflow, "api-server", "--apps", "core", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90  # ~10 s on an idle machine
        while True:
            try:
                if http_get(f"{base}/api/v2/version", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"api-server did not start:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.3)
        yield base, port
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server's own process group (start_new_session)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def chromium(url: str, profile: Path, *, screenshot: Path | None = None, size=(1280, 900), wait_ms: int = 3000):
    """Open ``url`` in headless Chromium; with ``screenshot`` save a PNG, else print the DOM once loaded.

    ``wait_ms`` of virtual time let the page's timers, error handlers and fetches run before it ends.
    """
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    output = [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={size[0]},{size[1]}",
        f"--virtual-time-budget={wait_ms}",
        *output,
        url,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=90)


def login_token(base: str, username: str, password: str) -> str:
    """A JWT from the simple auth manager's login endpoint (what the UI keeps in its _token cookie)."""
    request = urllib.request.Request(  # noqa: S310 - the local api-server
        f"{base}/auth/token",
        data=json.dumps({"username": username, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - the local api-server
        return json.load(response)["access_token"]


class Beacon:
    """An HTTP server on 127.0.0.1 that records the path of every request it gets (a page's payload calling home)."""

    def __init__(self) -> None:
        hits = self.hits = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def _record(self) -> None:
                hits.append(self.path)
                self.send_response(204)
                self.send_header("Access-Control-Allow-Origin", "*")
                self.end_headers()

            do_GET = do_POST = do_HEAD = do_OPTIONS = _record

            def log_message(self, *args) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class StaticServer:
    """Plain ``http.server`` over a folder, without any security header: the positive control."""

    def __init__(self, folder: Path) -> None:
        handler = type("Quiet", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda self, *args: None})
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: handler(*a, directory=str(folder)))
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def read_png(path: Path):
    """(width, height, pixel(x, y) -> (r, g, b)) of a PNG file, read with Pillow."""
    from PIL import Image

    with Image.open(path) as shot:
        image = shot.convert("RGB")
    return image.width, image.height, lambda x, y: image.getpixel((x, y))


class DevTools:
    """Headless Chromium driven over the DevTools protocol (clicks, cookies, network events)."""

    def __init__(self, profile: Path) -> None:
        from websockets.sync.client import connect

        if CHROMIUM is None:
            pytest.skip("chromium is not installed (apt-get install -y chromium)")
        self._ws = None
        self._process = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
             "--disable-background-networking", "--disable-component-update", "--window-size=1280,900",
             # one process for all frames, so DOM.getDocument reaches into sandboxed iframes too
             "--disable-features=IsolateSandboxedIframes", "--disable-site-isolation-trials",
             f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.is_file() and port_file.read_text().strip()):
            if time.monotonic() > deadline:
                self.close()
                pytest.fail("chromium did not open its DevTools port")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json") as response:
            [page] = [t for t in json.load(response) if t["type"] == "page"]
        self._ws = connect(page["webSocketDebuggerUrl"], max_size=None)
        self._next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, **params) -> dict:
        self._next_id += 1
        self._ws.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv(timeout=30))
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            self.events.append(message)

    def wait(self, seconds: float) -> None:
        """Collect the browser's events for ``seconds``."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                self.events.append(json.loads(self._ws.recv(timeout=left)))
            except TimeoutError:
                break

    def screenshot(
        self, url: str, png: Path, *, size=(1280, 900), quiet_s: float = 1.5, timeout_s: float = 60, until: str = ""
    ) -> list:
        """Open ``url``, wait in real time for its load event and then for ``quiet_s`` without a request in
        flight, and for the JavaScript expression ``until`` to be true (``timeout_s`` at most in all), save the
        viewport as a PNG at ``png``; return the URLs still loading when it was taken.

        ``until``: the network can be quiet before a single-page app has drawn what it fetched (CI, under the whole
        suite's load: Airflow's run page was shot with its untranslated labels, "nav.home", and no run yet).

        Real time, not ``--virtual-time-budget``: headless Chromium stops its virtual time while a fetch is
        pending, and under the whole suite's load it never ended on Airflow's own run page (twice in clean-clone
        CI, 2026-12-01). Here a request that never ends costs ``timeout_s`` and is named, and the shot is taken.
        """
        self.send("Page.enable")
        self.send("Network.enable")
        self.send(
            "Emulation.setDeviceMetricsOverride", width=size[0], height=size[1], deviceScaleFactor=1, mobile=False
        )
        seen = len(self.events)
        self.send("Page.navigate", url=url)
        in_flight: dict[str, str] = {}
        loaded, quiet_since = False, None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.wait(0.2)
            for event in self.events[seen:]:
                method, params = event.get("method"), event.get("params", {})
                # Over the network only: Airflow's run page loads a blob: URL that never reports its end.
                if method == "Network.requestWillBeSent" and params["request"]["url"].startswith("http"):
                    in_flight[params["requestId"]] = params["request"]["url"]
                elif method in ("Network.loadingFinished", "Network.loadingFailed"):
                    in_flight.pop(params["requestId"], None)
                elif method == "Page.loadEventFired":
                    loaded = True
            seen = len(self.events)
            if not loaded or in_flight:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= quiet_s and (not until or self.holds(until)):
                break
        self.capture(png)
        return sorted(in_flight.values()) if loaded else [url, *sorted(in_flight.values())]

    def capture(self, png: Path) -> None:
        """Save the viewport as it is now as a PNG at ``png``."""
        png.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"]))

    def run(self, expression: str) -> None:
        """Run the JavaScript ``expression`` in the page (a click); its error fails the test."""
        done = self.send("Runtime.evaluate", expression=expression)
        assert "exceptionDetails" not in done, done["exceptionDetails"]

    def holds(self, expression: str) -> bool:
        """Whether the JavaScript ``expression`` is true in the page now."""
        return bool(self.send("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value"))

    def wait_until(self, expression: str, timeout_s: float = 30) -> bool:
        """Whether the JavaScript ``expression`` became true within ``timeout_s`` (a page drawing after a click)."""
        deadline = time.monotonic() + timeout_s
        while not self.holds(expression):
            if time.monotonic() > deadline:
                return False
            self.wait(0.2)
        return True

    def responses(self) -> list[tuple[str, int]]:
        return [
            (e["params"]["response"]["url"], e["params"]["response"]["status"])
            for e in self.events
            if e.get("method") == "Network.responseReceived"
        ]

    def follow(self, node_id: int) -> None:
        """Follow a link as a user does (focus it, press Enter): the navigation is the link's document's."""
        self.send("DOM.focus", nodeId=node_id)
        for kind in ("keyDown", "keyUp"):
            self.send(
                "Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter", windowsVirtualKeyCode=13, text="\r"
            )

    def find(self, predicate) -> list[int]:
        """Node ids of the elements, in every frame, for which ``predicate(name, attributes)`` holds."""
        found, todo = [], [self.send("DOM.getDocument", depth=-1, pierce=True)["root"]]
        while todo:
            node = todo.pop()
            attrs = node.get("attributes") or []
            if predicate(node.get("nodeName", "").lower(), dict(zip(attrs[::2], attrs[1::2], strict=True))):
                found.append(node["nodeId"])
            todo += node.get("children") or []
            todo += [node["contentDocument"]] if "contentDocument" in node else []
        return found

    def close(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                self._ws.close()
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
