"""benchmarks/bench.py's verdict: a benchmark with a failed contender, a contender that never ran or tables that
disagree exits non-zero and says why on its last line ("never report success for nothing")."""

from __future__ import annotations

import ast
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import bench
from helpers import parse_python

CONTENDERS = ["floor", "dbt", "pipeline"]


def run(contender: str, digest: str = "1", mode: str = "full") -> dict:
    return {"contender": contender, "mode": mode, "tables": {"marts.fact_orders": {"rows": 3, "digest": digest}}}


def report_of(runs: list[dict], errors: list[dict] | None = None) -> dict:
    rec = {"label": "scale 1", "runs": runs, "errors": errors or []}
    rec["agreement"] = bench.agreement(runs)
    return {"scales": [rec]}


def test_every_contender_ran_and_the_tables_agree_is_a_success():
    report = report_of([run("floor"), run("dbt"), run("dbt", mode="one_day_incremental"), run("pipeline")])
    assert bench.failures(report, CONTENDERS) == []
    assert bench.verdict([]).startswith("benchmark OK")


def test_a_failed_contender_fails_the_benchmark_named_with_the_first_and_last_lines_of_its_error():
    error = {"contender": "floor", "repeat": 0, "error": 'floor failed (exit 1):\ncolumn "valid_from" does not exist'}
    reasons = bench.failures(report_of([run("dbt"), run("pipeline")], [error]), CONTENDERS)
    assert reasons == [
        'scale 1: floor (repeat 0) failed: floor failed (exit 1): ... column "valid_from" does not exist'
    ]
    line = bench.verdict(reasons)
    assert line.startswith("BENCHMARK FAILED (1): ") and "floor (repeat 0) failed" in line


def test_tables_that_disagree_fail_the_benchmark_naming_contender_mode_and_table():
    report = report_of([run("floor"), run("dbt", digest="2"), run("pipeline")])
    assert bench.failures(report, CONTENDERS) == ["scale 1: tables disagree with floor: dbt full marts.fact_orders"]


def test_a_contender_without_a_run_or_an_error_fails_the_benchmark():
    reasons = bench.failures(report_of([run("floor"), run("dbt")]), CONTENDERS)
    assert reasons == ["scale 1: pipeline produced no run"]


def test_no_data_set_or_an_abort_is_not_a_success():
    assert bench.failures({"scales": []}, CONTENDERS) == ["no data set was benchmarked"]
    aborted = report_of([run("floor"), run("dbt"), run("pipeline")]) | {"aborted": "KeyboardInterrupt: "}
    assert bench.failures(aborted, CONTENDERS) == ["aborted: KeyboardInterrupt: "]


def test_data_sets_asked_for_and_skipped_are_not_a_success():
    """Review: the real data absent, or the larger scales skipped after --stop-after-minutes, said "benchmark OK"."""
    ran = report_of([run("floor"), run("dbt"), run("pipeline")])
    absent = ran | {"skipped_real": "no real Greenery data at /nowhere (set GREENERY_REAL_DATA)"}
    assert bench.failures(absent, CONTENDERS) == [
        "real: no real Greenery data at /nowhere (set GREENERY_REAL_DATA), or leave real out of --scales"
    ]
    stopped = ran | {"stopped": "scale 1 took 11.7 min > 10: the data sets after it skipped"}
    [reason] = bench.failures(stopped, CONTENDERS)
    assert reason.startswith("stopped early: scale 1 took 11.7 min") and "--stop-after-minutes" in reason


def test_a_table_empty_in_every_contender_is_not_an_agreement():
    """Review: a table empty (or missing) in the floor and every contender compared equal: "benchmark OK"."""
    empty = {"contender": "floor", "mode": "full", "tables": {"marts.fact_orders": {"rows": 0, "digest": None}}}
    runs = [empty, {**empty, "contender": "dbt"}, {**empty, "contender": "pipeline"}]
    assert bench.failures(report_of(runs), CONTENDERS) == [
        "scale 1: empty or missing in every contender, so not compared: marts.fact_orders"
    ]


def test_main_exits_non_zero_with_the_reason_on_the_last_line(monkeypatch, tmp_path, capsys):
    # main() with the contenders' loop replaced by one that records a failure: no database, no Airflow.
    def scale(self, scale):
        rec = {"scale": scale, "label": "scale 1", "runs": [], "errors": [], "steps": {"total_s": 1.0}}
        rec["errors"].append({"contender": "floor", "repeat": 0, "error": "floor: boom"})
        rec["agreement"] = bench.agreement(rec["runs"])
        self.report["scales"].append(rec)
        return rec

    class NoServer:
        def __init__(self, *a) -> None:
            pass

        def url(self) -> str:
            return "postgresql:///nowhere"

        def stop(self) -> None:
            pass

    def init(self, args, report, *a) -> None:
        self.report, self.sql_version, self.code_version = report, "sql", "code"

    monkeypatch.setattr(bench.Bench, "__init__", init)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the work folder, kept as it failed
    monkeypatch.setattr(bench.Bench, "scale", scale)
    monkeypatch.setattr(bench, "admin_connect", _no_connection)
    monkeypatch.setattr(bench, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(bench, "markdown", lambda report: "(report)")
    monkeypatch.setattr(bench, "compile_bytecode", lambda: None)
    monkeypatch.setattr("greenery.dev.embedded_pg.EmbeddedPostgres", NoServer)
    monkeypatch.setenv(bench.PG_URL_ENV, "postgresql:///nowhere")
    code = bench.main(["--contenders", "floor", "--no-parse", "--as-installed", "--scales", "1"])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 1
    assert out[-1] == "BENCHMARK FAILED (1): scale 1: floor (repeat 0) failed: floor: boom"


class _NoConnection:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def execute(self, *a):
        return self

    def fetchone(self):
        return ("16",)


def _no_connection(url):
    return _NoConnection()


def test_every_function_the_bench_times_still_exists():
    """The bench wraps product functions by name to say where the time goes; a renamed one failed every pipeline
    contender at its first task (AttributeError), found only by running the bench."""
    import importlib

    gone = [f"{module}.{name}" for module, name in bench.PROFILED if not hasattr(importlib.import_module(module), name)]
    # greenery.checks.gx imports GX (seconds): its names are read from its source instead.
    gx_source = parse_python(Path(bench.PROJECT_DIR) / "include/greenery/checks/gx.py")
    defined = {node.name for node in gx_source.body if isinstance(node, ast.FunctionDef)}
    imported = {
        alias.asname or alias.name
        for node in gx_source.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    gone += [f"greenery.checks.gx.{name}" for name in bench.GX_PROFILED if name not in defined | imported]
    assert gone == []
