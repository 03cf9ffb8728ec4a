"""POST a message to a Slack Incoming Webhook with urllib: redirects refused, an answer cut short told apart.

slack_sdk's own ``WebhookClient.send`` follows redirects (review: a 302 turned the POST into a GET without the
message, and the page counted as sent) and keeps no headers of an error answer (a 429's Retry-After);
delivery.py sends through this instead, with the client's URL, timeout, TLS context and proxy.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit


class NotHttp(ValueError):
    """The connection's webhook URL is not http(s): a configuration error."""


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect comes back as the 3xx error it is: urllib would follow a 301/302/303 with a GET, which drops the
    message, and the last page's 200 would read as delivered."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        return None


def post(client: Any, body: Mapping[str, Any]) -> tuple[int, str, dict[str, str]]:
    """POST ``body`` as JSON to the webhook of slack_sdk's WebhookClient ``client`` (its URL, timeout, TLS context and
    proxy), redirects refused: (status, text, lowercased headers) of whatever answered, error statuses included."""
    scheme = urlsplit(client.url).scheme.lower()
    if scheme not in ("http", "https"):  # as slack_sdk: urllib would also open file:// and ftp:// URLs
        raise NotHttp(f"the webhook URL's scheme {scheme!r} is not http or https")
    handlers: list[Any] = [_RefuseRedirects(), urllib.request.HTTPSHandler(context=client.ssl)]
    if client.proxy:
        handlers.append(urllib.request.ProxyHandler({"http": client.proxy, "https": client.proxy}))
    headers = {**(client.default_headers or {}), "Content-Type": "application/json;charset=utf-8"}
    data = json.dumps(dict(body)).encode()
    request = urllib.request.Request(client.url, data=data, headers=headers, method="POST")  # noqa: S310 (checked)
    try:
        response = urllib.request.build_opener(*handlers).open(request, timeout=client.timeout)
    except urllib.error.HTTPError as err:  # any status but 2xx, redirects included
        response = err
    with response:
        charset = response.headers.get_content_charset() or "utf-8"
        # A webhook answers "ok" or an error code: the first 64 KiB tell what answered, however much it sends.
        data = response.read(65536)
        declared = response.headers.get("content-length") or ""
        if 200 <= response.status < 300 and declared.isdigit() and len(data) < min(int(declared), 65536):
            # http.client returns a body cut short as it is: Slack's answer never came whole (maybe delivered).
            raise http.client.IncompleteRead(data, int(declared) - len(data))
        text = data.decode(charset, errors="replace")
        return response.status, text, {k.lower(): v for k, v in response.headers.items()}


def json_ok(text: str) -> bool:
    try:
        return json.loads(text).get("ok") is True
    except (ValueError, AttributeError):
        return False
