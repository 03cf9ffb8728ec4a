"""Reaching the warehouse through the Airflow connection ``greenery_warehouse``.

Everything talks to PostgreSQL through the Airflow connection ``greenery_warehouse``
(``AIRFLOW_CONN_GREENERY_WAREHOUSE``), so the DAG, the CLI and the tests share one configuration.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from greenery import config
from greenery.errors import RetryCannotFix

log = logging.getLogger(__name__)


# The staging rules use pg_input_is_valid (greenery.project.render.malformed_uuid), new in PostgreSQL 16.
MIN_SERVER_VERSION = 160000


class WarehouseUnavailableError(RuntimeError):
    """The warehouse cannot be reached; the message says which connection and why."""


class ConnectionSettingError(WarehouseUnavailableError, RetryCannotFix):
    """The connection itself is written wrong (its variable, its extra): trying again cannot help."""


class UnsupportedWarehouseError(RuntimeError, RetryCannotFix):
    """The warehouse's PostgreSQL is older than the models need, or the role lacks a grant a run needs: a retry meets
    it again (trial: two retries, four minutes, before the page that named the grant)."""


def require_supported_server(conn) -> None:
    """Fail before building anything when the server cannot run the models (not halfway, on an odd SQL error), or the
    role may not create what a run creates: its build schemas, and temporary tables staging rows (review: without
    them, PostgreSQL's bare "permission denied for database", naming neither the role nor the grant)."""
    version = conn.info.server_version
    if version < MIN_SERVER_VERSION:
        raise UnsupportedWarehouseError(
            f"the warehouse runs PostgreSQL {version // 10000}.{version % 10000} (server_version_num {version}); "
            f"the models need PostgreSQL {MIN_SERVER_VERSION // 10000} or newer (pg_input_is_valid in the staging "
            "rules)"
        )
    role, database, missing = missing_privileges(conn)
    if missing:
        raise UnsupportedWarehouseError(
            f"role {role} may not {' or '.join(missing)} in database {database}: a run creates its build schemas"
            f" and stages rows in temporary tables; nothing was built. As the database's owner: grant"
            f" {', '.join(missing)} on database {database} to {role}"
        )


def missing_privileges(conn) -> tuple[str, str, list[str]]:
    """The role, the database, and which of ``create`` and ``temp`` on it the role lacks (a run needs both)."""
    role, database, create, temp = conn.execute(
        "select current_user, current_database(), has_database_privilege(current_database(), 'create'),"
        " has_database_privilege(current_database(), 'temp')"
    ).fetchone()
    return role, database, [name for name, held in (("create", create), ("temp", temp)) if not held]


def conn_env_var(conn_id: str | None = None) -> str:
    conn_id = conn_id or config.get().warehouse_conn_id
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def refuse_undefined(environ: Mapping[str, str]) -> None:
    """Refuse the connection GREENERY_WAREHOUSE_CONN_ID names when ``environ``, where a command reads connections,
    does not define it (review: a misspelt id used the command's private database instead, exit 0)."""
    if config.warehouse_named() and not environ.get(conn_env_var()):
        default = conn_env_var(config.WAREHOUSE_CONN_ID)  # review: "to use the embedded one" was not so when it is set
        unset = f"the connection {default} defines" if environ.get(default) else "the embedded PostgreSQL"
        raise config.SettingError(
            f"GREENERY_WAREHOUSE_CONN_ID={config.get().warehouse_conn_id!r}: no such connection ({conn_env_var()} is"
            f" not set; the greenery command reads connections from the environment); unset"
            f" GREENERY_WAREHOUSE_CONN_ID to use {unset}; nothing was done"
        )


def connect(conn_id: str | None = None, *, connect_timeout: int | None = None, answer_within_s: float | None = None):
    """A psycopg connection through the Airflow connection ``conn_id``, in autocommit mode.

    Autocommit, so that each ``with conn.transaction()`` block is a transaction of its own and a read
    outside one does not leave a transaction open around the next (each model builds in one transaction).
    ``connect_timeout`` (seconds) applies where the connection's extra sets none: a failure callback must not
    wait libpq's two minutes on a warehouse that accepts and never answers (Airflow kills it after 20 s).
    ``answer_within_s`` bounds, on this side, the setting this function sends once connected (see
    :func:`answer_within`; review: a warehouse that stopped answering right after the connection held it for good).
    """
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    conn_id = conn_id or config.get().warehouse_conn_id
    try:
        hook = PostgresHook(postgres_conn_id=conn_id)
        _refuse_unparsable_extra(hook.connection, conn_id)
        if not hook.connection.host and hook.connection.conn_type not in ("postgres", "postgresql"):
            # Review: "not a uri", or one without its postgres:// ("user:pw@host/db"), tried this machine's socket.
            raise ConnectionSettingError(
                f"{conn_env_var(conn_id)} is set, but Airflow could not parse it as a connection (no postgres scheme,"
                f" no host: neither a URI nor JSON): write it as {POSTGRES_WRITTEN_AS}"
            )
        if connect_timeout is not None and "connect_timeout" not in hook.connection.extra_dejson:
            hook.connection.extra = json.dumps({**hook.connection.extra_dejson, "connect_timeout": connect_timeout})
        conn = hook.get_conn()
    except WarehouseUnavailableError:
        raise
    except Exception as exc:
        unparsed = unparsed_connection(conn_id) if type(exc).__name__ == "AirflowNotFoundException" else None
        if unparsed is not None:
            raise ConnectionSettingError(unparsed) from exc
        # One line: libpq's message goes on after a newline and a tab ("\n\tIs the server running on that host ...").
        said = " ".join(str(exc).split())
        if type(exc).__name__ == "ConnectionTimeout":  # psycopg's own words name no server: on-call needs which
            said += f" (server {hook.connection.host}, port {hook.connection.port or 5432})"
        raise WarehouseUnavailableError(
            f"cannot connect to the warehouse through Airflow connection {conn_id!r} "
            f"(set it in the UI or with {conn_env_var(conn_id)}): {type(exc).__name__}: {said}"
        ) from exc
    conn.autocommit = True
    # Review: a task stopped by its timeout (or killed) closed its connection, but its statement ran on in the
    # server, holding the publish lock (a build waiting behind a reader's lock: until that reader ended). PostgreSQL
    # ends a statement whose client has gone within this interval (Linux; PostgreSQL 14+, the README asks 16).
    bounded = answer_within(conn, answer_within_s, "the connection's settings") if answer_within_s else None
    try:
        with bounded if bounded is not None else contextlib.nullcontext():
            end_statements_of_gone_clients(conn)
    except BaseException:
        conn.close()
        raise
    return conn


@contextlib.contextmanager
def connect_answering_within(seconds: float, what: str, *, connect_timeout: int | None = None) -> Iterator[Any]:
    """:func:`connect`, its settings and the ``with`` block each bounded by ``seconds`` on this side
    (:func:`answer_within`): for the reads and records a page must not wait on."""
    with (
        connect(connect_timeout=connect_timeout, answer_within_s=seconds) as conn,
        answer_within(conn, seconds, what),
    ):
        yield conn


@contextlib.contextmanager
def answer_within(conn, seconds: float, what: str) -> Iterator[None]:
    """Cut ``conn`` off when the block still runs after ``seconds``: the statement it waits on then raises psycopg's
    OperationalError, as when the server goes away.

    For what must not wait on a warehouse that took the connection and then stopped answering (a proxy or a
    network path that stopped forwarding): ``statement_timeout`` is the server's, and the statement never reached
    it (review: the alert's read held ``alert_slack`` until its execution timeout, whose retry could page again).
    The socket is shut down through a duplicate of its descriptor, taken here, before the block: it names this
    connection's socket whatever psycopg closes meanwhile (review: a duplicate taken by the timer could name another
    socket that reused the number). Once the block has ended, the timer cuts nothing (a lock and a flag: review, a
    late cut released an advisory lock the connection still held).
    """
    sock = socket.socket(fileno=os.dup(conn.fileno()))  # this connection's socket, for as long as we hold it
    guard = threading.Lock()
    ended = was_cut = False

    def cut() -> None:
        nonlocal was_cut
        with guard:
            if ended:
                return
            was_cut = True
            log.warning("%s: the warehouse did not answer within %gs; closing the connection", what, seconds)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(seconds, cut)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        with guard:
            ended = True
        sock.close()  # the duplicate only: psycopg's descriptor stays psycopg's to close
    if was_cut:  # as the block's last statement returned (third review): the connection is gone all the same
        raise WarehouseUnavailableError(f"{what}: the warehouse did not answer within {seconds:g}s; connection closed")


def end_statements_of_gone_clients(conn) -> None:
    """PostgreSQL ends a statement of ``conn`` once its client has gone, within 2 s (14+; a platform without the
    kernel support refuses the setting: then as before)."""
    from psycopg import errors

    if conn.info.server_version >= 140000:
        with contextlib.suppress(errors.InvalidParameterValue):
            conn.execute("set client_connection_check_interval = '2s'")


POSTGRES_WRITTEN_AS = "a URI (postgres://user:password@host:5432/database) or as JSON with a whole-number port"


def unparsed_connection(conn_id: str, written_as: str = POSTGRES_WRITTEN_AS) -> str | None:
    """Why Airflow could not parse the connection's variable, when it is set: Airflow then says only that the conn_id
    "isn't defined" (review: it told people to set a variable they had set, with a port of "notaport"; the Slack
    connection's, with a brace missing, said "not defined" too). ``written_as``: how to write one of its kind."""
    from airflow.secrets.environment_variables import EnvironmentVariablesBackend

    backend = EnvironmentVariablesBackend()  # Airflow's own reading of AIRFLOW_CONN_<ID>
    value = backend.get_conn_value(conn_id)
    if not value:
        return None
    try:
        backend.get_connection(conn_id)
    except Exception as exc:
        said = " ".join(str(exc).split())
        for secret in _passwords(value):  # Airflow's messages name a bad port, not the password; never print it
            said = said.replace(secret, "***")
        why = f"{type(exc).__name__}: {said}"
    else:
        return None  # it parses here: Airflow's not-found has another cause, and connect reports it as it is
    return (
        f"{conn_env_var(conn_id)} is set, but Airflow could not parse it as a connection ({why}): write it as"
        f" {written_as}"
    )


def _passwords(value: str) -> list[str]:
    """The password a malformed connection variable holds, as written and decoded, if it can be found."""
    found = []
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        found.append(json.loads(value).get("password"))
    with contextlib.suppress(ValueError):
        raw = urlsplit(value).netloc.rpartition("@")[0].partition(":")[2]
        found += [raw, unquote(raw)]
    return [str(p) for p in found if p]


def connection_json(url: str) -> str:
    """An Airflow connection (JSON form) for a libpq URL; a ``host`` query parameter may be a socket dir."""
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    host = query.pop("host", None) or parts.hostname or ""
    conn = {
        "conn_type": "postgres",
        "host": unquote(host),
        "login": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
        "schema": parts.path.lstrip("/") or "postgres",
    }
    if parts.port:
        conn["port"] = parts.port
    if query:
        conn["extra"] = query
    return json.dumps(conn)


# A new database compares text byte by byte (locale C) whatever the server's default: the models group, sort
# and join on text ids, which PostgreSQL compares with memcmp under C and through the C library otherwise
# (scale 1000, the bare SQL of every model: 121.4 s under C.UTF-8, 107.2 s under C). Byte order is code point
# order in UTF-8, as under C.UTF-8; lower() and regex classes act on ASCII only (README: Operations). libc: an
# ICU default provider would not compare with memcmp. (The CLI's embedded server keeps the `postgres` database
# its initdb made.)
NEW_DATABASE = "template template0 encoding 'UTF8' locale_provider libc locale 'C'"


def create_database(admin_url: str, name: str, template: str | None = None) -> str:
    """(Re)create database ``name`` on the server of ``admin_url`` (a copy of ``template``, else a new one with
    :data:`NEW_DATABASE`'s settings); return its URL."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
        settings = sql.SQL(" template {}").format(sql.Identifier(template)) if template else sql.SQL(" " + NEW_DATABASE)
        conn.execute(sql.SQL("create database {}{}").format(sql.Identifier(name), settings))
    parts = urlsplit(admin_url)
    return parts._replace(path=f"/{name}").geturl()


def _refuse_unparsable_extra(conn, conn_id: str) -> None:
    """Airflow reads an extra that is not a JSON object as none, logging a traceback: its sslmode, sslrootcert,
    options... dropped in silence (a connection asked to require TLS went without it). Refused, naming it."""
    try:
        extra = json.loads(conn.extra) if conn.extra else {}
    except ValueError as exc:
        extra = exc
    if not isinstance(extra, dict):
        said = f"{type(extra).__name__}: {extra}" if isinstance(extra, Exception) else f"a JSON {type(extra).__name__}"
        raise ConnectionSettingError(
            f"the extra of Airflow connection {conn_id!r} is not a JSON object ({said}): Airflow would drop every"
            f' option in it (sslmode, sslrootcert, ...); write it as one, e.g. {{"sslmode": "require"}}'
        )


def _libpq_params(conn_id: str | None = None) -> dict[str, str]:
    """What ``PostgresHook.get_conn`` gives libpq for ``conn_id``: the connection's fields and every extra it does
    not keep for itself (``sslrootcert``, ``application_name``, a socket directory as ``host`` in a URI's query)."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    hook = PostgresHook(postgres_conn_id=conn_id or config.get().warehouse_conn_id)
    conn = hook.connection
    _refuse_unparsable_extra(conn, conn_id or config.get().warehouse_conn_id)
    params = {"host": conn.host, "port": conn.port, "user": conn.login, "password": conn.password}
    params["dbname"] = conn.schema
    params.update({k: v for k, v in conn.extra_dejson.items() if k not in hook.ignored_extra_options})
    return {k: str(v) for k, v in params.items() if v not in (None, "")}


def sqlalchemy_url(conn_id: str | None = None) -> str:
    """The SQLAlchemy URL (psycopg 3 driver) of the Airflow connection, for Great Expectations: the parameters the
    model tasks connect with, every extra included (review: GX got two of them, and a URI naming its socket as
    ``?host=`` built the models, then validated on the default socket; client certificates were dropped too)."""
    from sqlalchemy.engine import URL

    params = _libpq_params(conn_id)
    host = params.pop("host", None)
    if host and host.startswith("/"):
        params["host"], host = host, None  # a socket directory: libpq reads it from the query
    port = params.pop("port", None)
    url = URL.create(
        "postgresql+psycopg",
        username=params.pop("user", None),
        password=params.pop("password", None),
        host=host,
        port=int(port) if port else None,
        database=params.pop("dbname", None),
        query=params,
    )
    return url.render_as_string(hide_password=False)
