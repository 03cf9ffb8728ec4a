"""``greenery``: generate data, load raw tables, run the DAG for days, print the business answers.

With no warehouse connection configured (``AIRFLOW_CONN_GREENERY_WAREHOUSE`` unset), commands use a
private PostgreSQL kept in ``.greenery/pg`` of the project, so nothing needs installing.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

from greenery import config, gc_tuning, links
from greenery.checks import strict_json
from greenery.cli_types import (
    RUN_EXIT_STATUSES,
    UsageError,
    command,
    day_option,
    days_to_run,
    output_folder,
    port_option,
    scale_option,
    schema_option,
    span_option,
)
from greenery.dev import cli_runs, db_command, local_airflow, stop_signals  # light: Airflow loads in their functions

STATE_DIR = config.state_dir()


def _embedded_if_unconfigured(always: bool = False) -> object | None:
    """Start the private PostgreSQL unless a warehouse is configured (``always``: even then, for this process)."""
    from greenery import warehouse
    from greenery.dev import embedded_pg

    if not always:
        warehouse.refuse_undefined(os.environ)  # a connection named and not defined: no fallback (review)
        if os.environ.get(warehouse.conn_env_var()):
            return None
    with stop_signals.deferred():  # initdb or pg_ctl killed half-way would break the folder (review)
        server = embedded_pg.open_server(STATE_DIR / "pg")
    # Airflow reads connections from the environment: this process's tasks and children use the server.
    os.environ[warehouse.conn_env_var()] = warehouse.connection_json(server.url())
    print(f"using the embedded PostgreSQL in {server.data_dir} (greenery db psql)")
    return server


def cmd_generate(args: argparse.Namespace) -> int:
    from greenery.dev.generator import generate

    output_folder(args.directory)
    started = time.perf_counter()
    counts = generate(args.directory, scale=args.scale, seed=args.seed, days=args.days)
    print(f"wrote {sum(counts.values()):,} rows to {args.directory} in {time.perf_counter() - started:.1f}s")
    for table, rows in counts.items():
        print(f"  {table:<12} {rows:>12,}")
    return 0


def cmd_load_raw(args: argparse.Namespace) -> int:
    from greenery import warehouse
    from greenery.sources import load

    _embedded_if_unconfigured()
    with warehouse.connect() as conn:
        counts = load.load_dir(conn, args.directory, args.schema, allow_empty=args.allow_empty)
    for table, rows in counts.items():
        print(f"  {args.schema}.{table:<12} {rows:>12,}")
    if args.schema != (raw := config.get().raw_schema):
        print(f"note: the pipeline reads {raw} (GREENERY_RAW_SCHEMA), not {args.schema}", file=sys.stderr)
    return 0


def run_days(days: list[dt.date], verbose: bool = False, full_refresh: bool = False) -> int:
    """Run the DAG for each day in turn, a progress line per day; stop at the first failed day (or Ctrl-C)."""
    if days[0] < (start := config.get().start_date):
        from greenery.answers import before_start  # reads raw's first order (trial: advice that could not work)

        raise UsageError(before_start(days[0], start))
    with cli_runs.preparing(config.DAG_ID, days):  # up to the first day's run: a stop pages
        local_airflow.prepare(Path(os.environ["AIRFLOW_HOME"]))  # its migration runs to its end, a stop after it
        for line in cli_runs.fail_abandoned_runs():
            print(line, file=sys.stderr)
        dag = local_airflow.load_dag()
        # --verbose: Airflow's log goes to the terminal, and no file is named (none is written).
        log_file = None if verbose else STATE_DIR / "logs" / f"run-{dt.datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}.log"
        with cli_runs.sigterm_stops_the_day(), _closed_pipe_lines_dropped():  # `kill` or `timeout` stops as Ctrl-C
            return _each_day(days, dag, log_file, full_refresh)


@contextlib.contextmanager
def _closed_pipe_lines_dropped() -> Iterator[None]:
    """A log line the terminal no longer takes (`--verbose | head` left) is dropped, not a traceback each on stderr
    (review: 200 of them); any other logging error is still said."""
    handle_error = logging.Handler.handleError

    def unless_the_pipe_closed(handler: logging.Handler, record: logging.LogRecord) -> None:
        if not isinstance(sys.exc_info()[1], BrokenPipeError):
            handle_error(handler, record)

    logging.Handler.handleError = unless_the_pipe_closed
    try:
        yield
    finally:
        logging.Handler.handleError = handle_error


def _each_day(days: list[dt.date], dag, log_file: Path | None, full_refresh: bool) -> int:
    from greenery import run_outcome  # psycopg: 0.6 s that `greenery --help` need not pay

    for n, day in enumerate(days, 1):
        ran: list[dt.date] = []  # the day, once its run ended
        try:
            if n > 1:
                gc_tuning.between_runs()  # what the last day's cycles hold (gc_tuning.py)
            if cli_runs.stop_noted():  # a stop dropped in that collection (diff review: a whole day more ran)
                raise KeyboardInterrupt
            dag_run = _one_day(n, days, day, dag, log_file, full_refresh, ran)
        except KeyboardInterrupt:  # outside the day's run (before it, or after it ended): no run is left running
            raise cli_runs.stopped(dag.dag_id, day, None) from None
        except BrokenPipeError:  # the reader left between two days' runs: it did less than asked (review), say so
            said = run_outcome.ran_and_not(days, n - 1 + len(ran))
            raise cli_runs.RunInterrupted(f"its output was closed at {day}: {said}", 141) from None
        except Exception as exc:
            if (n == 1 and not getattr(exc, "ran_in_part", False)) or isinstance(exc, cli_runs.RunInterrupted):
                raise  # nothing ran: main's one line (exit 2), or the traceback of the unknown; a stop says (130, 141)
            before = isinstance(exc, local_airflow.SchedulerAliveError)  # refused before the day's run
            print(run_outcome.stopped_later(exc, before, day, days, n - 1 + len(ran)), file=sys.stderr)
            return 1
        if dag_run.state != "success" and cli_runs.stopped_by_the_user(dag_run):
            raise cli_runs.stopped(dag.dag_id, day, dag_run.run_id)
        if cli_runs.stop_noted():  # a stop whose KeyboardInterrupt Python dropped: the run went on to its end
            raise cli_runs.stopped(dag.dag_id, day, dag_run.run_id, ended=str(dag_run.state))
        if dag_run.state != "success":
            if note := run_outcome.published_anyway(dag_run):
                print(f"  {note}", file=sys.stderr)
            for task_id, error in run_outcome.failures(dag_run, local_airflow.failed_tasks(dag_run)):
                print(f"  {task_id}: " + "\n    ".join(error), file=sys.stderr)  # its later lines indented
            where = "above" if log_file is None else f"in {log_file}"
            print(f"stopped at {day}{cli_runs.not_run_after(day)}; the whole log is {where}", file=sys.stderr)
            return 1
    return 0


def _one_day(n: int, days: list[dt.date], day: dt.date, dag, log_file: Path | None, full_refresh: bool, ran: list):
    """Run ``day`` (the ``n``th of ``days``) with its progress line; return its DagRun (``ran`` gets the day)."""
    from greenery import run_outcome

    started = time.perf_counter()
    if n == 1 and log_file is not None:  # here, for a reader that leaves at once to be told what did not run
        print(f"Airflow's log of this command: {log_file}")
    local_airflow.refuse_beside_a_scheduler(dag.dag_id)  # before each day: the UI may be unpaused meanwhile
    with contextlib.nullcontext(sys.stdout) if log_file is None else local_airflow.output_to(log_file) as console:
        print(f"[{n}/{len(days)}] {day} ...", end="", flush=True, file=console)
        with run_outcome.line_ends_on_a_stop(console):
            dag_run = local_airflow.run_day(day, conf={"full_refresh": full_refresh}, dag=dag, must_finish=True)
        ran.append(day)
        print(f" {dag_run.state} in {time.perf_counter() - started:.1f}s{run_outcome.notes(dag_run)}", file=console)
    return dag_run


def cmd_run(args: argparse.Namespace) -> int:
    days_asked = days_to_run(args.date, args.end_date)  # before the server starts: a wrong range starts nothing
    with cli_runs.preparing(config.DAG_ID, days_asked):
        _embedded_if_unconfigured()
    return run_days(days_asked, verbose=args.verbose, full_refresh=args.full_refresh)


def print_answers(day: dt.date | None = None) -> int:
    from greenery import answers, warehouse

    with warehouse.connect() as conn:
        found = answers.read(conn, day)
    print("\n" + answers.format_answers(found))
    return 0


def cmd_answers(args: argparse.Namespace) -> int:
    _embedded_if_unconfigured()
    return print_answers(args.date)


def cmd_demo(args: argparse.Namespace) -> int:
    """Generated data -> embedded PostgreSQL -> the DAG through Airflow -> the business answers."""
    from greenery import audit, warehouse
    from greenery.dev.generator import generate
    from greenery.sources import fingerprint, load

    started = time.perf_counter()
    # Never the configured warehouse: the demo replaces raw with generated data (review: it overwrote one).
    _no_scheduler_running_the_dag()
    _embedded_if_unconfigured(always=True)
    data_dir = STATE_DIR / f"data-scale-{args.scale:g}"
    counts = generate(data_dir, scale=args.scale, seed=args.seed)
    print(f"generated {sum(counts.values()):,} rows (scale {args.scale:g}) into {data_dir}")
    with warehouse.connect() as conn:
        before = fingerprint.content(conn)
        load.load_dir(conn, data_dir)
        # Its last day with orders: its sessions go on a day past it, whose 0 orders the volume check blocks (review)
        last_day = conn.execute(f"select max(created_at)::date from {config.get().raw_schema}.orders").fetchone()[0]
        # Tables published from other raw (load-raw): rebuilt from the demo's, not compared with it (trial)
        replaced = audit.last_published(conn) is not None and fingerprint.content(conn) != before
    with links.rerun_with(f"greenery demo --scale {args.scale:g} --seed {args.seed}"):  # its own database's
        status = run_days([last_day], verbose=args.verbose, full_refresh=replaced)
    if status == 0:
        status = print_answers(last_day)
    print(f"\ndemo finished in {time.perf_counter() - started:.1f}s")
    return status


def _no_scheduler_running_the_dag() -> None:
    """Before the demo replaces raw: beside a scheduler running the DAG, its day's run was refused after (review)."""
    local_airflow.prepare(Path(os.environ["AIRFLOW_HOME"]))
    local_airflow.refuse_beside_a_scheduler(config.DAG_ID)


def cmd_docs(args: argparse.Namespace) -> int:
    from greenery import docs
    from greenery.project import models

    docs.check(models.discover())  # review: an entry of the wrong shape was printed, exit 0; its model's run failed
    readme = config.PROJECT_DIR / "README.md"
    if args.write_readme:
        # The full path: the package's checkout (review: run from another, it said "README.md updated" of this one)
        print(f"{readme} updated" if docs.update_readme(readme) else f"{readme} already up to date")
    else:
        print(docs.readme_section())
    return 0


def cmd_format_suites(args: argparse.Namespace) -> int:
    folder = Path(config.get().expectations_dir)
    # Each file once, as first spelled (review: `d.json /abs/d.json` rewrote it, then a traceback: one temporary file)
    unique: dict[Path, Path] = {}
    for path in args.files or sorted(folder.glob("*.json")):
        unique.setdefault(path.resolve(), path)
    paths = list(unique.values())
    if not paths:  # formatting nothing is not a success
        raise UsageError(f"{folder}: no suite files (*.json) to format")
    # Every file is read before any is written: a bad one changes nothing.
    for path in paths:
        if not path.is_file():
            raise UsageError(f"{path}: no such suite file; nothing was changed")
        try:
            strict_json.loads(path.read_text())
        except strict_json.JSONDecodeError as exc:
            where = f"{path}, line {exc.lineno}, column {exc.colno}"
            raise UsageError(f"{where}: {strict_json.why(exc)}; nothing was changed") from None
        except UnicodeDecodeError as exc:
            raise UsageError(f"{path}, byte {exc.start}: not UTF-8 text; nothing was changed") from None
    from greenery.checks import gx_suites  # GX: ~2 s to import, once the files are known to be good
    from greenery.checks.suites import SuiteDefinitionError, write_all

    try:  # every file through GX before any is written
        texts = {path: gx_suites.formatted_suite(path) for path in paths}
    except SuiteDefinitionError as exc:
        raise UsageError(f"{exc}; nothing was changed") from None
    changed = {path: formatted for path, (text, formatted) in texts.items() if formatted != text}
    with stop_signals.deferred():  # all or none: a stop (Ctrl-C, SIGTERM) acts after the last replace
        write_all(changed)
    for path in changed:
        print(f"formatted {path}")
    print(f"{len(changed)} of {len(paths)} suite file(s) changed")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    """Airflow's UI, scheduler and DAG processor here; Ctrl-C stops them (and the embedded PostgreSQL, unless kept)."""
    from greenery.dev import embedded_pg, local_ui

    local_airflow.refuse_beside_cli_runs(config.DAG_ID, cli_runs.live_runs())
    server = _embedded_if_unconfigured()
    for line in cli_runs.fail_abandoned_runs():  # else its scheduler's runs would queue behind them for good
        print(line, file=sys.stderr)
    stop_line = "Ctrl-C stops Airflow"  # and with a configured warehouse, nothing else
    if server is not None:
        kept = embedded_pg.kept_running(server.data_dir)
        stop_line += (
            "; the embedded PostgreSQL stays up (`greenery db start`)" if kept else " and the embedded PostgreSQL"
        )
    try:
        home = Path(os.environ["AIRFLOW_HOME"])
        return local_ui.serve(home, port=args.port, host=args.host, stop_line=stop_line, embedded=server is not None)
    finally:
        if server is not None:
            server.stop()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="greenery", description=__doc__.splitlines()[0].replace("``", ""))
    sub = parser.add_subparsers(dest="command", required=True)

    gen = command(sub, "generate", "write Greenery-shaped raw CSVs at a scale factor")
    gen.add_argument("directory", type=Path)
    gen.add_argument("--scale", type=scale_option, default=1.0, help="1 = about the real shop's size")
    gen.add_argument("--seed", type=int, default=42, help="the same seed gives the same files (default 42)")
    gen.add_argument("--days", type=span_option, default=None, help="days of order activity (default grows with scale)")
    gen.set_defaults(func=cmd_generate)

    load = command(sub, "load-raw", "load a folder of the seven Greenery CSVs into the raw schema")
    load.add_argument("directory", type=Path)
    raw = config.get().raw_schema
    load.add_argument("--schema", type=schema_option, default=raw, help=f"default {raw}, which runs read")
    load.add_argument(
        "--allow-empty", action="store_true", help="load a file with a header and no rows (it empties its table)"
    )
    load.set_defaults(func=cmd_load_raw)

    run = command(
        sub, "run", "run the greenery_daily DAG (in-process, dag.test) for a day or a range", RUN_EXIT_STATUSES
    )
    day = {"type": day_option, "metavar": "YYYY-MM-DD"}
    run.add_argument("--date", **day, required=True, help="the UTC day to build (the run's logical date)")
    run.add_argument("--end-date", **day, default=None, help="build every day from --date to this one")
    run.add_argument("--verbose", action="store_true", help="Airflow's task logs on the console, not in the log file")
    run.add_argument("--full-refresh", action="store_true", help="rebuild the history tables from all of raw (Param)")
    run.set_defaults(func=cmd_run)

    answers = command(sub, "answers", "print the business answers from the marts")
    answers.add_argument("--date", **day, default=None, help="as of the end of this day (default: the latest)")
    answers.set_defaults(func=cmd_answers)

    doc = command(sub, "docs", "print the marts' column docs (include/sql/marts/_docs.yml) as Markdown")
    doc.add_argument("--write-readme", action="store_true", help="refresh the generated section of README.md")
    doc.set_defaults(func=cmd_docs)

    suites = command(sub, "format-suites", "give suite files missing ids and GX's form (include/expectations)")
    suites.add_argument("files", type=Path, nargs="*", help="default: every suite file")
    suites.set_defaults(func=cmd_format_suites)

    demo = command(sub, "demo", "generate, load and run on the embedded PostgreSQL, print the answers")
    demo.add_argument("--scale", type=scale_option, default=1.0, help="1 = about the real shop's size (default)")
    demo.add_argument("--seed", type=int, default=42, help="the same seed gives the same data (default 42)")
    demo.add_argument("--verbose", action="store_true", help="show Airflow's task logs")
    demo.set_defaults(func=cmd_demo)

    db = command(sub, "db", "the embedded PostgreSQL: start (and keep running), stop, status, psql")
    db.add_argument("action", choices=("start", "stop", "status", "psql"))
    psql = db.add_argument("psql_args", nargs=argparse.REMAINDER, help="psql only: its own options, e.g. -c 'select 1'")
    psql.required = False  # trial: a missing action was reported as "required: action, psql_args"
    db.set_defaults(func=lambda args: db_command.run(args, STATE_DIR / "pg"))

    ui = command(sub, "ui", "start Airflow's UI + scheduler locally (no Docker) on the embedded PostgreSQL")
    ui.add_argument("--port", type=port_option, default=8080, help="port to listen on (default 8080)")
    ui.add_argument("--host", default="127.0.0.1", help="address to listen on (every visitor is an admin)")
    ui.set_defaults(func=cmd_ui)
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # the whole process is this command's (a caller passing argv keeps its own collector settings)
        gc_tuning.apply()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pgserver").setLevel(logging.ERROR)  # its start/stop chatter hides the answers
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    try:  # the parser's defaults read the settings (a bad one is a line too); Airflow's are fixed at its import
        args = build_parser().parse_args(argv)
        home = Path(os.environ.get("AIRFLOW_HOME") or STATE_DIR / "airflow")
        # `ui` makes its own links; run/demo (prepare()) and ui decide on backfills where they start Airflow, not here
        local_airflow.configure(home, ui_links=args.func is not cmd_ui, backfills=False)
        with stop_signals.end_the_command(whole_process=argv is None):  # argv: a caller of its own
            code = args.func(args)
        sys.stdout.flush()  # a reader gone (a closed pipe) raises here, in the handler below, not at exit
        return code
    except (cli_runs.RunInterrupted, stop_signals.StopSignal) as exc:  # Ctrl-C, SIGTERM, SIGHUP (dev/stop_signals.py)
        with contextlib.suppress(OSError):  # a terminal that hung up answers EIO; the page went out already
            print(f"stopped: {exc}", file=sys.stderr)
        if exc.exit_status == 141:  # its output closed: Python's own flush at exit would raise
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return exc.exit_status
    except KeyboardInterrupt:  # Ctrl-C outside a day's run (in one, it is a RunInterrupted)
        print("stopped: interrupted (Ctrl-C)", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `greenery answers | head`: the reader left; exit as a shell would (128 + SIGPIPE)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's own flush at exit would raise
        return 141
    except Exception as exc:  # one clear line for known failures; the traceback is noise to a user
        from greenery.cli_errors import error_line

        if (line := error_line(exc)) is None:
            raise
        print(line, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
