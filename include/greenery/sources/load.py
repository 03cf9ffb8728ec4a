"""Loading the raw Greenery tables from CSV files (``greenery load-raw``) or from rows (tests).

Loading one table happens in one transaction (drop, create, COPY), so a bad file leaves the table
that was there before untouched, and the error names the file, the line and the column.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from psycopg import sql

from greenery import config
from greenery.sources.schema import RAW_INDEXES, RAW_TABLES

log = logging.getLogger(__name__)


class RawLoadError(RuntimeError):
    """A CSV file does not fit its raw table; nothing was changed."""


def _replace_table(cur, schema: str, table: str) -> sql.Composed:
    columns = RAW_TABLES[table]
    ident = sql.Identifier(schema, table)
    cur.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
    cur.execute(sql.SQL("drop table if exists {}").format(ident))
    cur.execute(
        sql.SQL("create table {} ({})").format(
            ident,
            sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in columns.items()),
        )
    )
    return sql.SQL("copy {} ({}) from stdin").format(ident, sql.SQL(", ").join(map(sql.Identifier, columns)))


def _create_indexes(cur, schema: str, table: str) -> None:
    for column in RAW_INDEXES.get(table, ()):
        cur.execute(sql.SQL("create index on {} ({})").format(sql.Identifier(schema, table), sql.Identifier(column)))


def _check_header(path: Path, table: str, header: list[str]) -> None:
    expected = list(RAW_TABLES[table])
    if header == expected:
        return
    missing = [c for c in expected if c not in header]
    extra = [c for c in header if c not in expected]
    raise RawLoadError(
        f"{path}: header does not match raw.{table}: missing {missing or 'none'}, unexpected {extra or 'none'}"
        + ("" if missing or extra else f"; columns must be in the order {expected}")
    )


def _copy_error(exc: Exception, path: Path) -> RawLoadError:
    """Translate PostgreSQL's "COPY t, line N, column c" (N counts data rows) into the file's line."""
    diag = getattr(exc, "diag", None)
    message = getattr(diag, "message_primary", None) or str(exc)
    context = getattr(diag, "context", None) or ""
    found = re.search(r"line (\d+)(?:, column (\w+))?", context)
    if not found:
        return RawLoadError(f"{path}: {message}")
    row, column = int(found.group(1)), found.group(2)
    where = f"{path}, line {row + 1} (data row {row})" + (f", column {column}" if column else "")
    return RawLoadError(f"{where}: {message}")


def load_csv(conn, path: Path, table: str, schema: str | None = None) -> int:
    """Replace ``schema.table`` with the rows of the CSV at ``path``; return the row count."""
    schema = schema or config.get().raw_schema
    path = Path(path)
    # newline=None folds CRLF and LF alike: the Greenery files mix them.
    with path.open(newline=None, encoding="utf-8") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise RawLoadError(f"{path}: empty file, expected a header row") from None
        _check_header(path, table, [h.strip() for h in header])
        try:
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy(_replace_table(cur, schema, table)) as copy:
                    for row in reader:
                        # Greenery CSVs write NULL as an empty field.
                        copy.write_row([value if value != "" else None for value in row])
                _create_indexes(cur, schema, table)
                cur.execute(sql.SQL("select count(*) from {}").format(sql.Identifier(schema, table)))
                count = cur.fetchone()[0]
        except RawLoadError:
            raise
        except Exception as exc:
            raise _copy_error(exc, path) from exc
    log.info("loaded %s.%s: %d rows from %s", schema, table, count, path)
    return count


def load_dir(conn, directory: Path, schema: str | None = None) -> dict[str, int]:
    """Load the seven Greenery CSVs of ``directory`` into the raw schema."""
    directory = Path(directory)
    missing = [t for t in RAW_TABLES if not (directory / f"{t}.csv").is_file()]
    if missing:
        raise RawLoadError(f"{directory}: missing {', '.join(f'{t}.csv' for t in missing)}")
    return {table: load_csv(conn, directory / f"{table}.csv", table, schema) for table in RAW_TABLES}


def load_rows(conn, table: str, rows: Iterable[Mapping[str, object]], schema: str | None = None) -> int:
    """Replace a raw table with in-memory rows (absent keys are NULL); used by tests and fixtures."""
    schema = schema or config.get().raw_schema
    columns = list(RAW_TABLES[table])
    count = 0
    with conn.transaction(), conn.cursor() as cur:
        with cur.copy(_replace_table(cur, schema, table)) as copy:
            for row in rows:
                unknown = set(row) - set(columns)
                if unknown:
                    raise RawLoadError(f"raw.{table} has no column(s) {sorted(unknown)}")
                copy.write_row([row.get(c) for c in columns])
                count += 1
        _create_indexes(cur, schema, table)
    return count
