"""Addresses on this machine for ``greenery ui``: free ports, and the URLs a browser and the components use."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def browser_host(host: str) -> str:
    """The host a browser on this machine uses for a server listening on ``host``."""
    return "localhost" if host in ("127.0.0.1", "0.0.0.0", "::") else host  # noqa: S104 - a comparison


def local_host(host: str) -> str:
    """The address this machine's processes reach a server listening on ``host`` at."""
    return {"0.0.0.0": "127.0.0.1", "localhost": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104


def url_host(host: str) -> str:
    """``host`` as a URL writes it: an IPv6 address in brackets (review: http://::1:8080 is no URL)."""
    return f"[{host}]" if ":" in host else host


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
