"""A warehouse that took the connection and then stopped answering: a local port forwarding to the test's PostgreSQL
until the client sends given bytes (the bounds the alert's reads and the Data quality view rely on)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading

import psycopg


@contextlib.contextmanager
def stalling_warehouse(monkeypatch, url: str, stall_on: bytes):
    """The warehouse connection pointed at a local port that forwards to ``url``'s server (a unix socket: the
    embedded one) until its client sends ``stall_on``: from then on that connection forwards nothing either way and
    stays open, a warehouse that took the connection and stopped answering (a proxy or a network path that stopped
    forwarding). Its server never sees the statement, so the server's statement_timeout never starts."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    target = os.path.join(info["host"], f".s.PGSQL.{info.get('port') or 5432}")
    listener = socket.create_server(("127.0.0.1", 0))
    opened: list[socket.socket] = []

    def pump(src: socket.socket, dst: socket.socket, quiet: threading.Event, watch: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if watch and stall_on in data:
                    quiet.set()
                if not quiet.is_set():
                    dst.sendall(data)

    def serve() -> None:
        with contextlib.suppress(OSError):  # the listener closed: the test is over
            while True:
                client, _ = listener.accept()
                server = socket.socket(socket.AF_UNIX)
                server.connect(target)
                opened.extend((client, server))
                quiet = threading.Event()
                for args in ((client, server, quiet, True), (server, client, quiet, False)):
                    threading.Thread(target=pump, args=args, daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    conn = {"conn_type": "postgres", "host": "127.0.0.1", "port": listener.getsockname()[1], "login": info["user"]}
    monkeypatch.setenv("AIRFLOW_CONN_GREENERY_WAREHOUSE", json.dumps({**conn, "schema": info["dbname"]}))
    try:
        yield
    finally:
        # shutdown() first: close() alone wakes no thread blocked in accept() or recv() (review: the threads and three
        # server sessions outlived the test).
        for sock in (listener, *opened):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


# Where the warehouse stops answering: on the setting sent right after connecting (warehouse.connect), or on the
# first read of the audit tables.
STALLS = {"after connecting": b"client_connection_check_interval", "on its first read": b"greenery_audit"}
