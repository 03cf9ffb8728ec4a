"""Loading the raw Greenery tables from CSV files (``greenery load-raw``) or from rows (tests).

A load replaces its tables in one transaction: any error leaves every raw table as it was, and names
the file, the line and (when known) the column. A replaced table's owner and privileges stay
(privileges.py), and so do its comments, policies, triggers, keys and indexes (sources/attachments.py).
Timestamps without a zone are read as UTC.
"""

from __future__ import annotations

import bisect
import contextlib
import csv
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from pathlib import Path

import psycopg
from psycopg import sql

from greenery import config, privileges
from greenery.sources import attachments
from greenery.sources.schema import RAW_INDEXES, RAW_TABLES

log = logging.getLogger(__name__)

# PostgreSQL's largest text value; csv's default (128 KiB) would refuse a long field the column accepts.
csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))


# ISO-8601 (SOURCE.md): PostgreSQL also reads words and other orders into a timestamp ("now" and "yesterday" as
# of the load, "03/04/2021" as its DateStyle says), which a file must not mean (review: loaded, then published).
ISO_TIMESTAMP = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?:[Zz]|[+-]\d{2}(?::?\d{2})?)?", re.ASCII
)


# Numbers in decimal digits: PostgreSQL 16 also reads 0x10, 0o17, 0b11 and 1_000 into a number column (review: a typo
# such as 1_0 loaded as ten). Spaces around a number and NaN/Infinity (staging quarantines them) are PostgreSQL's as
# before. What each kind of column must look like, and how the error says it.
_SPACES = r"\s*"
VALUE_SHAPES = {
    "timestamptz": (ISO_TIMESTAMP, "is not an ISO-8601 timestamp (like 2021-02-10T14:03:00Z)"),
    "integer": (re.compile(_SPACES + r"[+-]?\d+" + _SPACES, re.ASCII), "is not a whole number in decimal digits"),
    "numeric": (
        re.compile(
            _SPACES + r"(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|(?i:nan|[+-]?inf(?:inity)?))" + _SPACES,
            re.ASCII,
        ),
        "is not a decimal number (like 12.5)",
    ),
}


class RawLoadError(RuntimeError):
    """A CSV file does not fit its raw table; nothing was changed."""


def _error(where: object, what: str) -> RawLoadError:
    return RawLoadError(f"{where}: {what}; nothing was changed")


@contextlib.contextmanager
def _setting_up(schema: str, side: str) -> Iterator[None]:
    """PostgreSQL's errors while the side schema and its tables are made: one line, not a traceback (review: a role
    without CREATE on the database ended load-raw in InsufficientPrivilege's). Nothing is changed: the transaction
    is rolled back."""
    try:
        yield
    except psycopg.Error as exc:
        hint = ""
        if isinstance(exc, psycopg.errors.InsufficientPrivilege):
            hint = f" (the loading role needs CREATE on the database, to make the side schema {side})"
        raise _error(f"preparing the tables of {schema}", attachments.postgres_says(exc) + hint) from exc


def _replace_tables(conn, schema: str | None, fills: Mapping[str, Callable]) -> dict[str, int]:
    """Fill each table's new version with ``fills[table](cur, copy_statement)``, then swap them all in.

    One transaction, so a failure anywhere replaces nothing. The tables are filled in a side schema and moved
    into ``schema`` at the end: in place, raw.* would be locked for all the COPYs, not just for the swap."""
    schema = schema or config.get().raw_schema
    side = f"{schema}{config.LOADING_SUFFIX}"  # never committed: invisible to others; a second load waits for this one
    counts = {}
    with conn.transaction(), conn.cursor() as cur:
        # A timestamp without a zone means UTC, whatever the database's TimeZone (`local`: this transaction).
        cur.execute("set local time zone 'UTC'")
        # What would stop the swap, told before the files are read: the swap reads it again, under its lock.
        their_columns, swapping = {table: RAW_TABLES[table] for table in fills}, f"replacing the tables of {schema}"
        with _setting_up(schema, side):
            try:
                attachments.read_all(cur, schema, their_columns, check_only=True)
            except attachments.AttachmentsNotKept as exc:
                raise _error(swapping, str(exc)) from exc
            cur.execute(sql.SQL("create schema {}").format(sql.Identifier(side)))
        for table, fill in fills.items():
            columns = RAW_TABLES[table]
            ident = sql.Identifier(side, table)
            typed = (sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in columns.items())
            with _setting_up(schema, side):
                cur.execute(sql.SQL("create table {} ({})").format(ident, sql.SQL(", ").join(typed)))
            names = sql.SQL(", ").join(map(sql.Identifier, columns))
            counts[table] = fill(cur, sql.SQL("copy {} ({}) from stdin").format(ident, names))  # its own errors
            with _setting_up(schema, side):
                for column in RAW_INDEXES.get(table, ()):
                    cur.execute(sql.SQL("create index on {} ({})").format(ident, sql.Identifier(column)))
        try:
            target = sql.Identifier(schema)
            cur.execute(sql.SQL("create schema if not exists {}").format(target))
            # Privileges, policies, keys... belong to the table, not its name (review: a load took raw away from the
            # run's role): read from each old table, made again on the new one.
            kept = attachments.read_all(cur, schema, their_columns)
            grants = {table: privileges.read(cur, schema, table) for table in fills}
            # One statement: a foreign key between two replaced tables goes with them, whichever is dropped first.
            olds = sql.SQL(", ").join(sql.Identifier(schema, table) for table in fills)
            cur.execute(sql.SQL("drop table if exists {}").format(olds))
            for table in fills:
                cur.execute(sql.SQL("alter table {} set schema {}").format(sql.Identifier(side, table), target))
            attachments.make_again(cur, schema, kept)
            for table, old in grants.items():
                if old is not None:
                    privileges.keep(cur, schema, table, their_columns[table], old)
            cur.execute(sql.SQL("drop schema {}").format(sql.Identifier(side)))
        except psycopg.Error as exc:
            raise _error(swapping, attachments.postgres_says(exc)) from exc
        except (privileges.PrivilegesNotKept, attachments.AttachmentsNotKept) as exc:
            raise _error(swapping, str(exc)) from exc
    return counts


class _Lines:
    """The file line where each data row starts, for COPY's "line N" (which counts rows sent). Quoted
    newlines and blank lines shift the two apart; only the shifts are kept, so one-line rows cost nothing."""

    def __init__(self) -> None:
        self.rows, self.shifts = [0], [1]  # file line = row + shift, from each listed row on

    def note(self, row: int, line: int) -> None:
        if line - row != self.shifts[-1]:
            self.rows.append(row)
            self.shifts.append(line - row)

    def of(self, row: int) -> int:
        return row + self.shifts[bisect.bisect_right(self.rows, row) - 1]


def _check_header(path: Path, schema: str, table: str, header: list[str]) -> None:
    expected = list(RAW_TABLES[table])
    if header == expected:
        return
    missing = [c for c in expected if c not in header]
    extra = [c for c in header if c not in expected]
    twice = sorted({c for c in header if header.count(c) > 1})  # review: read "missing none, unexpected none"
    if twice and not missing and not extra:
        raise _error(
            f"{path}, line 1", f"header names {', '.join(twice)} more than once; {schema}.{table} has {expected}"
        )
    if not missing and not extra:  # user trial: "missing none, unexpected none" said nothing of what was wrong
        raise _error(f"{path}, line 1", f"header has {schema}.{table}'s columns in another order: {expected}")
    raise _error(
        f"{path}, line 1",
        f"header does not match {schema}.{table}: missing {missing or 'none'}, unexpected {extra or 'none'}"
        # review: a column named twice in another's place was only "missing ['inventory']"
        + (f"; it names {', '.join(twice)} more than once" if twice else ""),
    )


def _copy_error(exc: psycopg.Error, path: Path, lines: _Lines) -> RawLoadError:
    """Translate PostgreSQL's "COPY t, line N, column c" (N counts data rows) into the file's line."""
    message = exc.diag.message_primary or str(exc)
    found = re.search(r"line (\d+)(?:, column (\w+))?", exc.diag.context or "")
    if not found:
        return _error(path, message)
    column = found.group(2)
    return _error(f"{path}, line {lines.of(int(found.group(1)))}" + (f", column {column}" if column else ""), message)


def _not_utf8(path: Path, exc: UnicodeDecodeError) -> RawLoadError:
    """Find the first byte that is not UTF-8 by line: the decoder only knows its offset in a buffer."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):  # a \n byte is never part of a UTF-8 sequence
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as bad:
                column = len(line[: bad.start].decode("utf-8")) + 1
                where = f"{path}, line {number} (byte 0x{line[bad.start]:02x}, character {column})"
                return _error(where, "not valid UTF-8 (save the file as UTF-8)")
    return _error(path, f"not valid UTF-8 ({exc.reason})")


def _records(reader, path: Path, width: int) -> Iterator[tuple[int, list[str]]]:
    """(line where it starts, fields) of each record after the header; blank lines carry no data."""
    while True:
        start = reader.line_num + 1  # a record may span lines (quoted newlines)
        try:
            row = next(reader, None)
        except csv.Error as exc:
            runs_on = f" (it runs to line {reader.line_num}: a quote left open?)" if reader.line_num > start else ""
            raise _error(f"{path}, line {start}", f"malformed CSV: {exc}{runs_on}") from None
        if row is None:
            return
        if row and len(row) != width:
            raise _error(f"{path}, line {start}", f"{len(row)} fields, expected {width} (one per header column)")
        if row:
            yield start, row


def _copy_csv(path: Path, schema: str, table: str, cur, copy_statement, allow_empty: bool = False) -> int:
    """COPY the CSV at ``path`` (a fill for :func:`_replace_tables`); return its row count.

    A file with a header and no rows is refused unless ``allow_empty``: replacing a raw table with nothing is
    rarely what was meant (a truncated export), and the loss would only show in the next run's checks."""
    lines, count = _Lines(), 0
    try:
        # newline="": the csv module ends records at CRLF and LF alike (the Greenery files mix them) and keeps a
        # quoted field's own line breaks as written (newline=None turned a CR inside one into LF); utf-8-sig
        # drops a BOM.
        with path.open(newline="", encoding="utf-8-sig") as handle:
            # strict: a quote that never closes is an error, not the rest of the file in one field.
            reader = csv.reader(handle, strict=True)
            header = next(reader, None)
            if header is None:
                raise _error(path, "empty file, expected a header row")
            _check_header(path, schema, table, [h.strip() for h in header])
            kinds = enumerate(RAW_TABLES[table].items())
            shaped = [(i, column, *VALUE_SHAPES[kind]) for i, (column, kind) in kinds if kind in VALUE_SHAPES]
            with cur.copy(copy_statement) as copy:
                for start, row in _records(reader, path, len(RAW_TABLES[table])):
                    count += 1
                    lines.note(count, start)
                    for i, column, shape, said in shaped:
                        if row[i] != "" and not shape.fullmatch(row[i]):
                            raise _error(f"{path}, line {start}, column {column}", f"{row[i][:40]!r} {said}")
                    try:  # Greenery CSVs write NULL as an empty field.
                        copy.write_row([value if value != "" else None for value in row])
                    except psycopg.DataError as exc:  # psycopg's own check of a value (a NUL byte), not the server's
                        raise _error(f"{path}, line {start}", str(exc)) from exc
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from None
    except OSError as exc:  # unreadable (permissions, an I/O error): one line, not a traceback (review)
        raise _error(path, f"cannot be read: {exc.strerror or exc}") from None
    except psycopg.Error as exc:
        raise _copy_error(exc, path, lines) from exc
    if count == 0 and not allow_empty:
        raise _error(path, f"a header and no rows, which would empty {schema}.{table} (--allow-empty loads it so)")
    # Not "loaded": the load commits all files or none (review: four "loaded" lines, then "nothing was changed").
    log.debug("read %s: %d rows from %s (kept if every file loads)", table, count, path)  # the CLI says what loaded
    return count


def load_csv(conn, path: Path, table: str, schema: str | None = None, allow_empty: bool = False) -> int:
    """Replace ``schema.table`` with the rows of the CSV at ``path``; return the row count."""
    schema = schema or config.get().raw_schema
    fill = partial(_copy_csv, Path(path), schema, table, allow_empty=allow_empty)
    return _replace_tables(conn, schema, {table: fill})[table]


def load_dir(conn, directory: Path, schema: str | None = None, allow_empty: bool = False) -> dict[str, int]:
    """Replace the seven raw tables with the Greenery CSVs of ``directory``, all or nothing; return row counts."""
    directory, schema = Path(directory), schema or config.get().raw_schema
    if not directory.is_dir():  # review: a mistyped folder was reported as seven missing files
        raise _error(directory, "no such folder" if not directory.exists() else "not a folder")
    # Review: a CSV the loader does not know (a misnamed table, a copy) was left out without a word; and so was
    # one whose extension is upper case ("orders (1).CSV"). A table is read from <table>.csv only: "orders.CSV" is
    # refused too, as the same name in another case (beside orders.csv it would be left out; alone, one of the
    # two spellings would load on a case-insensitive disk and not on another).
    names = {f"{t}.csv": t for t in RAW_TABLES}
    found = sorted(p.name for p in directory.iterdir() if p.suffix.lower() == ".csv" and p.name not in names)
    unknown = [n for n in found if n.lower() not in names]
    recased = [n for n in found if n.lower() in names]
    if unknown or recased:
        why = [f"{', '.join(unknown)}: not a raw table (the tables are {', '.join(RAW_TABLES)})"] if unknown else []
        why += [
            f"{n}: not read, {schema}.{names[n.lower()]} is loaded from {n.lower()} (rename or remove it)"
            for n in recased
        ]
        raise _error(directory, "; ".join(why))
    missing = [t for t in RAW_TABLES if not (directory / f"{t}.csv").is_file()]
    if missing:
        named = [f"{t}.csv" + (" (not a file)" if (directory / f"{t}.csv").exists() else "") for t in missing]
        raise _error(directory, f"missing {', '.join(named)}")
    fills = {
        table: partial(_copy_csv, directory / f"{table}.csv", schema, table, allow_empty=allow_empty)
        for table in RAW_TABLES
    }
    return _replace_tables(conn, schema, fills)


def load_rows(conn, table: str, rows: Iterable[Mapping[str, object]], schema: str | None = None) -> int:
    """Replace a raw table with in-memory rows (absent keys are NULL), as a CSV load would; for tests."""
    columns, schema = list(RAW_TABLES[table]), schema or config.get().raw_schema

    def fill(cur, copy_statement) -> int:
        count = 0
        with cur.copy(copy_statement) as copy:
            for row in rows:
                unknown = set(row) - set(columns)
                if unknown:
                    raise _error(f"{schema}.{table}", f"no column(s) {sorted(unknown)}")
                copy.write_row([row.get(c) for c in columns])
                count += 1
        return count

    return _replace_tables(conn, schema, {table: fill})[table]
