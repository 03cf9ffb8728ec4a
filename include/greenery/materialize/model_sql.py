"""A model's rendered SQL inside the statements that materialize it, and errors that point into it."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from greenery.errors import RetryCannotFix
from greenery.project.models import Model


class ModelBuildError(RuntimeError):
    """A model's SQL failed in PostgreSQL; the message names the file, the line and the server's error."""


class ModelSqlError(ModelBuildError, RetryCannotFix):
    """The model's SQL itself is wrong (a syntax error, a column or function that does not exist, ...): a retry runs
    the same SQL, so the task fails at once (review: a typo cost two retries, 60 s then 120 s, before its error)."""


class OtherDaysError(ModelBuildError, RetryCannotFix):
    """A daily model's select gave rows of other days than its run's: a later run of such a day would hold it twice
    (each run replaces its own day only)."""


# PostgreSQL's errors that the same SQL gets again whatever the moment: syntax error, undefined column, undefined
# function, ambiguous column, grouping error, datatype mismatch, ambiguous function, invalid column reference. Not a
# missing relation (42P01) or a privilege (42501): a load or a grant in the meantime can fix those.
SQL_ERRORS = frozenset(("42601", "42703", "42883", "42702", "42803", "42804", "42725", "42P10"))


def build_error(model: Model, target: str, exc: BaseException, where: str = "") -> ModelBuildError:
    diag = getattr(exc, "diag", None)
    detail = getattr(diag, "message_primary", None) or str(exc)
    sqlstate = getattr(exc, "sqlstate", None)
    kind = ModelSqlError if sqlstate in SQL_ERRORS else ModelBuildError
    return kind(
        f"model {model.name} ({model.path}) failed building {target}: "
        f"[{sqlstate or type(exc).__name__}] {detail}{where}"
    )


@dataclass(frozen=True)
class ModelSql:
    """The rendered ``select`` of ``model``, built into ``target``."""

    model: Model
    target: str
    rendered: str

    @property
    def body(self) -> str:
        return self.rendered.strip().rstrip(";")

    def execute(self, cur, prefix: sql.Composable, suffix: sql.Composable | None = None) -> int:
        """Run ``prefix + select + suffix``; return the row count. A failure names the line of the select."""
        head = prefix.as_string(cur)
        statement = sql.Composed([sql.SQL(head), sql.SQL(self.body), suffix or sql.SQL("")])
        try:
            cur.execute(statement)
        except Exception as exc:
            position = getattr(getattr(exc, "diag", None), "statement_position", None)
            raise build_error(self.model, self.target, exc, self._where(position, len(head))) from exc
        return cur.rowcount

    def _where(self, position: str | None, head_len: int) -> str:
        if not position or not position.isdigit():
            return ""
        # The server counts from the start of the statement, which wraps the model's select.
        offset = max(int(position) - 1 - head_len, 0) + self.rendered.index(self.body)
        line_no = self.rendered.count("\n", 0, offset) + 1
        line = self.rendered.splitlines()[line_no - 1] if self.rendered else ""
        return f" at line {line_no} of the rendered SQL: {line.strip()!r}"
