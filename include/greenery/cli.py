"""``greenery``: generate data, load raw tables, run the DAG for days, print the business answers.

With no warehouse connection configured (``AIRFLOW_CONN_GREENERY_WAREHOUSE`` unset), commands use a
private PostgreSQL kept in ``.greenery/pg`` of the project, so nothing needs installing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
import time
import warnings
from pathlib import Path

from greenery import config

STATE_DIR = config.get().state_dir

ANSWERS_SQL = """
select
    as_of_date,
    users,
    buyers,
    repeat_buyers,
    repeat_rate,
    sessions,
    sessions_with_checkout,
    conversion_rate,
    avg_orders_per_hour,
    avg_sessions_per_hour,
    avg_delivery_days
from marts.metrics_daily
where as_of_date = coalesce(%(day)s, (select max(as_of_date) from marts.metrics_daily))
"""

TOP_PRODUCTS_SQL = """
select product_name, sessions_viewed, sessions_purchased, conversion_rate
from marts.fact_product
order by conversion_rate desc nulls last, product_name
limit 3
"""


def _embedded_if_unconfigured() -> object | None:
    """Start the project's private PostgreSQL unless a warehouse connection is configured."""
    from greenery import warehouse
    from greenery.dev.embedded_pg import EmbeddedPostgres

    if os.environ.get(warehouse.conn_env_var()):
        return None
    server = EmbeddedPostgres(STATE_DIR / "pg")
    warehouse.use_url(server.url())
    print(f"using the embedded PostgreSQL in {server.data_dir} (psql '{server.url()}')")
    return server


def _date(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def cmd_generate(args: argparse.Namespace) -> int:
    from greenery.dev.generator import generate

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
        counts = load.load_dir(conn, args.directory, args.schema)
    for table, rows in counts.items():
        print(f"  {args.schema}.{table:<12} {rows:>12,}")
    return 0


def _days(start: dt.date, end: dt.date | None) -> list[dt.date]:
    end = end or start
    if end < start:
        raise SystemExit(f"--end-date {end} is before --date {start}")
    return [start + dt.timedelta(days=n) for n in range((end - start).days + 1)]


def run_days(days: list[dt.date], quiet: bool, full_refresh: bool = False) -> int:
    from greenery.dev import local_airflow

    local_airflow.prepare(Path(os.environ["AIRFLOW_HOME"]), quiet=quiet)
    dag = local_airflow.load_dag()
    for day in days:
        started = time.perf_counter()
        dag_run = local_airflow.run_day(day, conf={"full_refresh": full_refresh}, dag=dag)
        seconds = time.perf_counter() - started
        print(f"greenery_daily {day}: {dag_run.state} in {seconds:.1f}s")
        if dag_run.state != "success":
            print(f"failed tasks: {', '.join(local_airflow.failed_tasks(dag_run)) or 'none'}", file=sys.stderr)
            return 1
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    _embedded_if_unconfigured()
    return run_days(_days(args.date, args.end_date), quiet=args.quiet, full_refresh=args.full_refresh)


def print_answers(day: dt.date | None = None) -> int:
    from greenery import warehouse

    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute(ANSWERS_SQL, {"day": day})
        row = cur.fetchone()
        if row is None:
            print("no metrics yet: run the DAG first (greenery run --date YYYY-MM-DD)", file=sys.stderr)
            return 1
        m = dict(zip([c.name for c in cur.description], row, strict=True))
        cur.execute(TOP_PRODUCTS_SQL)
        top = cur.fetchall()
    print(f"\nGreenery, as of the end of {m['as_of_date']} (marts.metrics_daily)")
    print(f"  users                         {m['users']:>10,}")
    print(f"  buyers (>= 1 order)           {m['buyers']:>10,}")
    print(f"  repeat buyers (>= 2 orders)   {m['repeat_buyers']:>10,}")
    print(f"  repeat rate                   {_pct(m['repeat_rate']):>10}")
    print(f"  sessions                      {m['sessions']:>10,}")
    print(f"  session conversion rate       {_pct(m['conversion_rate']):>10}")
    print(f"  orders per hour (avg)         {_num(m['avg_orders_per_hour']):>10}")
    print(f"  sessions per hour (avg)       {_num(m['avg_sessions_per_hour']):>10}")
    print(f"  days to deliver (avg)         {_num(m['avg_delivery_days']):>10}")
    print("  best-converting products (marts.fact_product):")
    for name, viewed, purchased, rate in top:
        print(f"    {name:<22} {purchased:>6} of {viewed:<6} sessions  {_pct(rate)}")
    return 0


def _pct(value) -> str:
    return "n/a" if value is None else f"{float(value):.1%}"


def _num(value) -> str:
    return "n/a" if value is None else f"{float(value):.2f}"


def cmd_answers(args: argparse.Namespace) -> int:
    _embedded_if_unconfigured()
    return print_answers(args.date)


def cmd_demo(args: argparse.Namespace) -> int:
    """Generated data -> embedded PostgreSQL -> the DAG through Airflow -> the business answers."""
    from greenery import warehouse
    from greenery.dev.generator import generate
    from greenery.sources import load

    started = time.perf_counter()
    _embedded_if_unconfigured()
    data_dir = STATE_DIR / f"data-scale-{args.scale:g}"
    counts = generate(data_dir, scale=args.scale, seed=args.seed)
    print(f"generated {sum(counts.values()):,} rows (scale {args.scale:g}) into {data_dir}")
    with warehouse.connect() as conn:
        load.load_dir(conn, data_dir)
        last_day = conn.execute(f"select max(created_at)::date from {config.get().raw_schema}.events").fetchone()[0]
    status = run_days([last_day], quiet=not args.verbose)
    if status == 0:
        status = print_answers(last_day)
    print(f"\ndemo finished in {time.perf_counter() - started:.1f}s")
    return status


def cmd_docs(args: argparse.Namespace) -> int:
    from greenery import docs

    readme = config.PROJECT_DIR / "README.md"
    if args.write_readme:
        print("README.md updated" if docs.update_readme(readme) else "README.md already up to date")
        return 0
    print(docs.readme_section())
    return 0


def cmd_format_suites(args: argparse.Namespace) -> int:
    from greenery.checks import gx  # Great Expectations: ~2 s to import

    paths = args.files or sorted(Path(config.get().expectations_dir).glob("*.json"))
    changed = [path for path in paths if gx.format_suite_file(path)]
    for path in changed:
        print(f"formatted {path}")
    print(f"{len(changed)} of {len(paths)} suite file(s) changed")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    """Airflow's UI, scheduler and DAG processor on this machine; Ctrl-C stops them and the embedded PostgreSQL."""
    from greenery.dev import local_ui

    server = _embedded_if_unconfigured()
    try:
        return local_ui.serve(Path(os.environ["AIRFLOW_HOME"]), port=args.port, host=args.host)
    finally:
        if server is not None:
            server.stop()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="greenery", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write Greenery-shaped raw CSVs at a scale factor")
    gen.add_argument("directory", type=Path)
    gen.add_argument("--scale", type=float, default=1.0, help="1 = about the real shop's size")
    gen.add_argument("--seed", type=int, default=42)
    gen.add_argument("--days", type=int, default=None, help="days of order activity (default grows with scale)")
    gen.set_defaults(func=cmd_generate)

    load = sub.add_parser("load-raw", help="load a folder of the seven Greenery CSVs into the raw schema")
    load.add_argument("directory", type=Path)
    load.add_argument("--schema", default=config.get().raw_schema)
    load.set_defaults(func=cmd_load_raw)

    run = sub.add_parser("run", help="run the greenery_daily DAG (in-process, dag.test) for a day or a range")
    run.add_argument("--date", type=_date, required=True)
    run.add_argument("--end-date", type=_date, default=None)
    run.add_argument("--quiet", action="store_true", help="only warnings from Airflow's task logs")
    run.add_argument(
        "--full-refresh", action="store_true", help="rebuild the incremental models from all history (the DAG Param)"
    )
    run.set_defaults(func=cmd_run)

    answers = sub.add_parser("answers", help="print the business answers from the marts")
    answers.add_argument("--date", type=_date, default=None)
    answers.set_defaults(func=cmd_answers)

    doc = sub.add_parser("docs", help="print the marts' column docs (include/sql/marts/_docs.yml) as Markdown")
    doc.add_argument("--write-readme", action="store_true", help="refresh the generated section of README.md")
    doc.set_defaults(func=cmd_docs)

    suites = sub.add_parser(
        "format-suites", help="give suite files missing ids and GX's serialized form (include/expectations)"
    )
    suites.add_argument("files", type=Path, nargs="*", help="default: every suite file")
    suites.set_defaults(func=cmd_format_suites)

    demo = sub.add_parser("demo", help="generate, load and run on the embedded PostgreSQL, print the answers")
    demo.add_argument("--scale", type=float, default=1.0)
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument("--verbose", action="store_true", help="show Airflow's task logs")
    demo.set_defaults(func=cmd_demo)

    ui = sub.add_parser("ui", help="start Airflow's UI + scheduler locally (no Docker) on the embedded PostgreSQL")
    ui.add_argument("--port", type=int, default=8080)
    ui.add_argument("--host", default="127.0.0.1", help="address to listen on (every visitor is an admin)")
    ui.set_defaults(func=cmd_ui)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pgserver").setLevel(logging.ERROR)  # its start/stop chatter hides the answers
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    args = build_parser().parse_args(argv)
    from greenery.dev import local_airflow

    # Airflow fixes its settings when first imported (connections and hooks import it too).
    local_airflow.configure(
        Path(os.environ.get("AIRFLOW_HOME") or STATE_DIR / "airflow"),
        quiet=getattr(args, "quiet", False) or not getattr(args, "verbose", True),
    )
    try:
        return args.func(args)
    except Exception as exc:  # one clear line for known failures; the traceback is noise to a user
        from greenery.materialize.model_sql import ModelBuildError
        from greenery.sources.load import RawLoadError
        from greenery.warehouse import WarehouseUnavailableError

        if isinstance(exc, RawLoadError | ModelBuildError | WarehouseUnavailableError):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
