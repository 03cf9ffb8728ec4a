"""Where `greenery ui` can listen: a reason the user can act on when it cannot (fast tier: sockets only)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from greenery.dev import addresses, local_ui

NOT_OURS = "192.0.2.1"  # TEST-NET-1 (RFC 5737): never an address of this machine


def test_a_free_port_can_be_listened_on():
    port = addresses.free_port()
    assert addresses.cannot_listen(port) is None
    assert addresses.port_in_use(port) is False


def test_a_taken_port_is_in_use():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert addresses.cannot_listen(port) == (
            f"port {port} on 127.0.0.1 is in use: stop what listens there or choose another port"
        )
        assert addresses.port_in_use(port) is True


NONLOCAL_BIND = Path("/proc/sys/net/ipv4/ip_nonlocal_bind")


@pytest.mark.skipif(
    NONLOCAL_BIND.is_file() and NONLOCAL_BIND.read_text().strip() != "0",
    reason="this kernel lets a socket bind any address (net.ipv4.ip_nonlocal_bind)",
)
def test_a_host_that_is_not_this_machines_is_named_as_such_not_as_a_port_in_use(tmp_path):
    """Review: `greenery ui --host 192.0.2.1` said "port 8080 on 192.0.2.1 is in use", sending the user to look
    for a process that does not exist."""
    port = addresses.free_port()
    why = addresses.cannot_listen(port, NOT_OURS)
    assert why.startswith(f"{NOT_OURS} is not an address of this machine: choose one of its own"), why
    with pytest.raises(local_ui.LocalUIError) as raised:
        local_ui.start(tmp_path / "airflow", port=port, host=NOT_OURS, components=("api-server",))
    assert str(raised.value) == why
    assert not (tmp_path / "airflow" / "airflow.db").exists()  # refused before anything was migrated


def test_an_address_in_brackets_is_told_to_drop_them():
    """Review: `--host [::1]` (as a URL writes it) was called a name this machine does not resolve."""
    assert addresses.cannot_listen(addresses.free_port(), "[::1]") == "[::1]: give the address without brackets (::1)"
