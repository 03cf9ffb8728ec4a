"""Addresses on this machine for ``greenery ui``: free ports, and the URLs a browser and the components use."""

from __future__ import annotations

import errno
import socket


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def cannot_listen(port: int, host: str = "127.0.0.1") -> str | None:
    """Why a server cannot listen on ``host`` port ``port``, in words for the user; None when it can.

    Review: every reason was "port P on H is in use", also for a ``--host`` that is not an address of this machine.
    """
    if host.startswith("[") and host.endswith("]"):
        return f"{host}: give the address without brackets ({host[1:-1]})"
    try:
        with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except socket.gaierror as exc:
        return f"{host} is not an address or a name this machine resolves ({exc.strerror}): choose one of its addresses"
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return f"port {port} on {host} is in use: stop what listens there or choose another port"
        if exc.errno == errno.EADDRNOTAVAIL:
            own = "::1 for this machine only, :: for" if ":" in host else "127.0.0.1 for this machine only, 0.0.0.0 for"
            return f"{host} is not an address of this machine: choose one of its own ({own} all of its interfaces)"
        if exc.errno == errno.EACCES and port < 1024:
            return f"port {port} needs privileges this user does not have: choose a port from 1024 up"
        return f"cannot listen on {host} port {port}: {exc.strerror or exc}"
    return None


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    return cannot_listen(port, host) is not None


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
