"""The one line a ``greenery`` command prints for a failure of a known kind (exit 2); None for a bug's."""

from __future__ import annotations

from greenery.printable import printable
from greenery.redaction import redact


def error_line(exc: BaseException) -> str | None:
    """``error: <why>``, masked (review: a password said in it) and each line of it printable: raw values and file
    names carry newlines, direction controls and terminal escapes, which forged an ``error:`` line of their own or
    recoloured the terminal (review). A suite's problems, one per file, keep a line each."""
    from greenery import config
    from greenery.answers import NoAnswersError
    from greenery.checks.suites import SuiteDefinitionError
    from greenery.cli_types import UsageError
    from greenery.dev import local_airflow
    from greenery.dev.embedded_pg import InitdbFailed, ServerInUseError, UnusableFolderError
    from greenery.docs import DocsError
    from greenery.materialize.model_sql import ModelBuildError
    from greenery.project.models import ModelDefinitionError
    from greenery.sources.load import RawLoadError
    from greenery.warehouse import WarehouseUnavailableError

    known = (
        RawLoadError,
        ModelBuildError,
        ModelDefinitionError,
        SuiteDefinitionError,
        WarehouseUnavailableError,
        UsageError,
        local_airflow.RunDidNothingError,
        local_airflow.SchedulerAliveError,
        local_airflow.MigrationError,
        InitdbFailed,
        NoAnswersError,
        ServerInUseError,
        UnusableFolderError,
        DocsError,
        config.SettingError,
    )
    if not isinstance(exc, known):
        return None
    # initdb's own lines, not a value's: each on a line of its own, indented (diff review: one line of literal \n's)
    if isinstance(exc, InitdbFailed):
        return "error: " + "\n  ".join(printable(redact(line)) for line in str(exc).splitlines())
    problems = exc.args if isinstance(exc, SuiteDefinitionError) else [exc]
    return "error: " + "\n".join(printable(redact(str(problem))) for problem in problems)
