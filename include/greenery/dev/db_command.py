"""``greenery db``: the embedded PostgreSQL on its own (start and keep running, stop, status, psql)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from greenery import warehouse
from greenery.dev import stop_signals


def run(args: argparse.Namespace, data_dir: Path) -> int:
    """The embedded PostgreSQL on its own: keep it up for psql or a BI tool between commands."""
    from greenery.dev import embedded_pg, psql

    if args.psql_args and args.action != "psql":
        print(f"greenery db {args.action} takes no arguments (got {' '.join(args.psql_args)})", file=sys.stderr)
        return 2
    if args.action == "start":
        server, running = None, embedded_pg.running_pid(data_dir)
        try:
            with stop_signals.deferred():  # a stop in initdb or pg_ctl would break the folder: after them
                server = embedded_pg.start_kept(data_dir)
        except (stop_signals.StopSignal, KeyboardInterrupt):  # stopped as it started: not left running
            if server is not None and running is None:
                server.unkeep()
            raise
        print(f"running until `greenery db stop`: {server.url('postgres')}")
        print(f"  psql: greenery db psql   (or {psql.psql_path()} '{server.url()}')")
        return 0
    if args.action == "stop":
        print("stopped" if embedded_pg.stop_kept(data_dir) else "not running")
        return 0
    pid = embedded_pg.running_pid(data_dir)
    if args.action == "status":
        kept = " (kept running by `greenery db start`)" if embedded_pg.kept_running(data_dir) else ""
        print(f"running, pid {pid}{kept}: {data_dir}" if pid else f"not running: {data_dir}")
        return 0 if pid else 1
    if os.environ.get(variable := warehouse.conn_env_var()):  # operator trial: it looked like the warehouse, empty
        print(
            f"note: this is the embedded PostgreSQL ({data_dir}), not the warehouse {variable} names; for that one,"
            " run psql with its address",
            file=sys.stderr,
        )
    with stop_signals.deferred():
        server = embedded_pg.open_server(data_dir)  # psql: start it for the session if needed
    try:
        return psql.run(server.url(), args.psql_args)
    finally:
        server.stop()
