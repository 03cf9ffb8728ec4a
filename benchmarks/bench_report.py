"""The Markdown report of benchmarks/bench.py: one section per data set, then the ratios and the set-up."""

from __future__ import annotations

import statistics

# The timers bench.py wraps around greenery.checks.gx's two-pass run (the names its profile is keyed by).
GX_IMPORT_TIMER = "gx import"
GX_PASS1_TIMER = "gx streams (each suite's query rows kept, pass 1, pass 2)"
GX_PASS2_TIMER = "gx pass 2 (_details of the failures)"
GX_DOCS_TIMER = "gx build_data_docs"
SCHEDULED = ("pipeline_scheduled", "cosmos_scheduled")


def _f(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _ratio(a, b) -> str:
    return "-" if not a or not b else f"{a / b:.2f}x"


def _pct(part, whole) -> str:
    return "-" if part is None or not whole else f"{100 * part / whole:.0f}%"


def _median_run(runs: list[dict]) -> dict:
    return sorted(runs, key=lambda r: r["wall_s"])[(len(runs) - 1) // 2]


def group(rec: dict) -> dict[tuple[str, str], dict]:
    """The run of median wall time of each (contender, mode) over the repeats, with the repeats' peak."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for run in rec["runs"]:
        groups.setdefault((run["contender"], run["mode"]), []).append(run)
    out = {}
    for key, runs in groups.items():
        # A scheduled contender's tasks run in Airflow's processes: no peak of ours to report (None).
        peaks = [r["peak_rss_mib"] for r in runs if r["peak_rss_mib"] is not None]
        out[key] = {**_median_run(runs), "peak_rss_mib": max(peaks, default=None), "repeats": len(runs)}
    return out


LABELS = {
    ("floor", "full"): "floor: SQL via psycopg",
    ("dbt", "full"): "dbt build (full)",
    ("dbt", "one_day_incremental"): "dbt build (one day incremental)",
    ("pipeline", "full"): "pipeline: DAG via dag.test (full)",
    ("pipeline", "one_day_incremental"): "pipeline: DAG via dag.test (one day incremental)",
    ("cosmos", "full"): "Cosmos: dbt DAG via dag.test (full)",
    ("cosmos", "one_day_incremental"): "Cosmos: dbt DAG via dag.test (one day incremental)",
    ("pipeline_scheduled", "full"): "pipeline: scheduler + LocalExecutor (full)",
    ("pipeline_scheduled", "one_day_incremental"): "pipeline: scheduler + LocalExecutor (one day incremental)",
    ("cosmos_scheduled", "full"): "Cosmos: scheduler + LocalExecutor (full)",
    ("cosmos_scheduled", "one_day_incremental"): "Cosmos: scheduler + LocalExecutor (one day incremental)",
}


def breakdown(run: dict, model_names: list[str]) -> list[tuple[str, float | None]]:
    """The pipeline run's wall time, part by part (task durations from the DagRun, the rest from timers)."""
    tasks, prof = run["tasks"], run.get("profile", {})

    def task(name: str) -> float:
        return tasks.get(name, {}).get("seconds") or 0.0

    def timer(name: str) -> float:
        return prof.get(name, {}).get("seconds", 0.0)

    validate = task("validate")
    gx_validate = timer("checks.gx.validate")
    gx_import = timer(GX_IMPORT_TIMER)  # in the validate task, before checks.gx.validate
    gx_context = timer("checks.gx._context (GX file context)")
    gx_plan = timer("checks.gx._planned")
    gx_pass1 = timer(GX_PASS1_TIMER)
    gx_pass2 = timer(GX_PASS2_TIMER)
    gx_docs = timer(GX_DOCS_TIMER)
    gx_summary = timer("checks.gx.summarize")
    gx_other = gx_validate - gx_context - gx_plan - gx_pass1 - gx_docs - gx_summary  # pass 2 runs in the streams
    model_tasks = sum(task(n) for n in model_names)
    build_sql = timer("tasks.build.build_model")
    fixed = ("validate", "check_source_freshness", "prepare_build", "publish")
    other = [t for t in tasks if t not in model_names and t not in fixed]
    return [
        ("dag.test start-up (serialize DAG, sync DagBag, create run)", run["before_first_task_s"]),
        ("check_source_freshness task (the process's first task)", task("check_source_freshness")),
        ("  of which freshness.check (SQL)", timer("sources.freshness.check")),
        ("prepare_build task", task("prepare_build")),
        (f"{len(model_names)} model tasks", model_tasks),
        ("  of which build_model (SQL, quarantine, ANALYZE, COMMENTs)", build_sql),
        ("  of which task overhead (Airflow, connect)", model_tasks - build_sql),
        ("validate task", validate),
        ("  of which import great_expectations (greenery.checks.gx)", gx_import),
        ("  of which GX file context", gx_context),
        ("  of which suites rendered and read (each suite and validation definition is added in its stream)", gx_plan),
        ("  of which the streams at once: each suite's query rows kept, pass 1, pass 2 (SQL)", gx_pass1),
        ("    of which pass 2: details of what failed (SQL; the streams' seconds summed)", gx_pass2),
        ("  of which Data Docs", gx_docs),
        ("  of which GX's rest (publish lock, data sources with their assets, summary)", gx_other + gx_summary),
        ("  of which the rest (task overhead, discover, quarantine counts, audit)", validate - gx_validate - gx_import),
        ("publish task", task("publish")),
        (f"{len(other)} other tasks ({', '.join(sorted(other)) or 'none'})", sum(task(t) for t in other)),
        ("dag.test loop between tasks", run["between_tasks_s"]),
        ("after the last task", run["after_last_task_s"]),
    ]


def markdown(report: dict) -> str:
    lines: list[str] = []
    for rec in report["scales"]:
        g = group(rec)
        lines += [
            f"### {rec['label']}: {rec['days']} days, {rec['raw_rows']:,} raw rows, run day {rec['day']}"
            + (f" (median of {report['args']['repeat']})" if report["args"]["repeat"] > 1 else ""),
            "",
            "| contender | wall s | process s | client CPU s | peak RSS MiB | model rows | rows/s | checks |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for key, label in LABELS.items():
            r = g.get(key)
            if r is None:
                continue
            if key[0].startswith("pipeline"):
                checks = (
                    f"{rec['gx_expectations']} GX expectations: "
                    f"validate {_f(r['validate_s'])} s = {_pct(r['validate_s'], r['wall_s'])}"
                )
            elif key[0] == "dbt":
                checks = f"{r['tests']} PK tests: {_f(r['tests_s'])} s = {_pct(r['tests_s'], r['wall_s'])}"
            elif key[0].startswith("cosmos"):
                checks = f"{r['tests']} PK tests in {r['test_tasks']} tasks: {_f(r['tests_s'])} s of task time"
            else:
                checks = "none"
            lines.append(
                f"| {label} | {_f(r['wall_s'])} | {_f(r['process_s'])} | {_f(r['client_cpu_s'], 1)} | "
                f"{_f(r['peak_rss_mib'], 0)} | {r['model_rows']:,} | {_f(r['rows_per_s'], 0)} | {checks} |"
            )
        for note in rec.get("notes", []):
            lines.append(f"\nNote: {note}")
        for err in rec.get("errors", []):
            lines.append(f"\n**{err['contender']} failed** (repeat {err['repeat']}): {err['error'][:500]}")
        p, p2 = g.get(("pipeline", "full")), g.get(("pipeline", "one_day_incremental"))
        for run in (p, p2):
            v = run and run.get("validation")
            if v:
                lines.append(
                    f"\nValidation ({run['mode']}): {v['evaluated']} expectations evaluated, "
                    f"{v['failed_critical']} critical and {v['failed_warning']} warning failures, "
                    f"quarantined {v['quarantined'] or 'nothing'}, "
                    f"{'published' if v['published'] else 'NOT published'}."
                )
        if p:
            names = list(rec["models"])
            lines += [
                "",
                f"Where the pipeline's time goes ({rec['label']}, dag.test):",
                "",
                "| part | full s | share | one day incremental s | share |",
                "|---|---:|---:|---:|---:|",
            ]
            again = dict(breakdown(p2, names)) if p2 else {}
            for label, seconds in breakdown(p, names):
                lines.append(
                    f"| {label} | {_f(seconds)} | {_pct(seconds, p['wall_s'])} | {_f(again.get(label))} | "
                    f"{_pct(again.get(label), p2 and p2['wall_s'])} |"
                )
            lines.append(f"| **dag.test wall** | **{_f(p['wall_s'])}** | | **{_f(p2 and p2['wall_s'])}** | |")
            suites = p.get("profile", {}).get(GX_PASS2_TIMER + " by suite", {})
            if sum(suites.values()) >= 0.05:  # pass 2 only looks at what failed: mostly nothing
                top = sorted(suites.items(), key=lambda kv: -kv[1])[:5]
                lines.append("\nSlowest GX suites in pass 2 (full run): " + ", ".join(f"{n} {s:.2f} s" for n, s in top))
        lines += scheduled_section(rec, g)
        lines.append("")

    lines += [
        "### ratios (wall; whole process in brackets)",
        "",
        "| data | pipeline / floor | pipeline / dbt | validate share of pipeline "
        "| one day incremental / full: pipeline | one day incremental / full: dbt "
        "| scheduled: pipeline / Cosmos | scheduled pipeline / dbt build | Cosmos dag.test / dbt build "
        "| tables agree |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for rec in report["scales"]:
        g = group(rec)
        p, f, d = g.get(("pipeline", "full")), g.get(("floor", "full")), g.get(("dbt", "full"))
        pi, di = g.get(("pipeline", "one_day_incremental")), g.get(("dbt", "one_day_incremental"))
        ps, cs = g.get(("pipeline_scheduled", "full")), g.get(("cosmos_scheduled", "full"))
        c = g.get(("cosmos", "full"))

        def both(a, b):
            if not a or not b:
                return "-"
            return f"{_ratio(a['wall_s'], b['wall_s'])} ({_ratio(a['process_s'], b['process_s'])})"

        agree = rec.get("agreement", {}).get("all_equal")
        lines.append(
            f"| {rec['label']} | {both(p, f)} | {both(p, d)} | {_pct(p and p['validate_s'], p and p['wall_s'])} | "
            f"{both(pi, p)} | {both(di, d)} | {_ratio(ps and ps['wall_s'], cs and cs['wall_s'])} | "
            f"{_ratio(ps and ps['wall_s'], d and d['wall_s'])} | {_ratio(c and c['wall_s'], d and d['wall_s'])} | "
            f"{'yes' if agree else 'NO' if agree is False else '-'} |"
        )
    parses = [(k, report[k]) for k in ("parse", "parse_compiled") if report.get(k)]
    if parses:
        lines += [
            "",
            "### DAG parse: import of dags/greenery_daily.py in a fresh interpreter "
            f"(median of {parses[0][1]['runs']})",
            "",
            "| bytecode | whole import s | `import airflow.sdk` s | beyond airflow.sdk s | process s (start to exit) "
            "| tasks | modules loaded | heavy modules loaded |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for key, parse in parses:
            label = "as installed: no .pyc, compiled at every import" if key == "parse" else "compiled .pyc"
            lines.append(
                f"| {label} | {_f(parse['total_s'], 3)} | {_f(parse['sdk_s'], 3)} | {_f(parse['dag_s'], 3)} | "
                f"{_f(parse['process_s'], 3)} | {parse['tasks']} | {parse['modules']} | "
                f"{', '.join(parse['heavy_modules']) or 'none'} |"
            )
    lines += [
        "",
        "### steps (s)",
        "",
        "| data | generate data | load raw + VACUUM ANALYZE | clone a database (median) |"
        " settle before each incremental run | whole data set |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    back_to_back = report.get("args", {}).get("back_to_back")
    for rec in report["scales"]:
        st = rec["steps"]
        generated = "cached" if st.get("generate_s") == 0 else st.get("generate_s", "-")
        lines.append(
            f"| {rec['label']} | {generated} | {st.get('load_raw_s', '-')} | {st.get('clone_s_median', '-')} | "
            f"{_settled(st.get('settle_s'), back_to_back)} | {st.get('total_s', 'aborted')} |"
        )
    setup = ", ".join(f"{k} {v} s" for k, v in report["setup"].items())
    if report.get("slack_alerts_received"):
        setup += f"; Slack alerts received by the local sink: {report['slack_alerts_received']}"
    load = report["machine"]
    lines += [
        "",
        f"Set-up: {setup}. Machine: {load['cpus']} CPUs, load average {load['load_avg_start'][0]:.1f} at the start"
        f" and {load.get('load_avg_end', [0])[0]:.1f} at the end; PostgreSQL {report.get('postgres_version')}"
        f" ({report.get('postgres')}), its memory and CPU not counted (but for the scheduled runs' CPU column)."
        " Python contenders' bytecode: "
        f"{report.get('bytecode')}; git {report.get('git_head')}.",
    ]
    return "\n".join(lines)


def _settled(steps: list[dict] | None, back_to_back: bool | None = False) -> str:
    """Each contender's settle seconds (bench.settle), or why there were none: ``--back-to-back``, no incremental
    run (``None``, or results from before the step), no contender that reached one."""
    if steps is None:
        return "-"
    if back_to_back:
        return "none (back to back)"
    return ", ".join(f"{s['contender']} {s['seconds']}" for s in steps) or "none"


def scheduled_section(rec: dict, g: dict) -> list[str]:
    """The runs by a real scheduler: per-task latencies, and the wall time split along the critical path."""
    runs = [(key, g[key]) for key in LABELS if key[0] in SCHEDULED and key in g]
    if not runs:
        return []
    lines = [
        "",
        f"Scheduled runs ({rec['label']}; LocalExecutor, metadata on PostgreSQL; medians over the tasks;"
        " overhead = queued -> done minus the task's own work):",
        "",
        "| run | trigger -> end s | tasks | ready -> queued | queued -> running | running | of which not work "
        "| overhead per task | Airflow CPU s | PostgreSQL CPU s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, r in runs:
        a = r["analysis"]
        cpu = r.get("cpu_s", {})
        airflow_cpu = sum(v for k, v in cpu.items() if k != "postgres")
        estimated = " (est.)" if key[0] == "cosmos_scheduled" else ""
        lines.append(
            f"| {LABELS[key]} | {_f(r['wall_s'])} | {a['tasks_run']} | {_f(a['median_to_queued_s'])} | "
            f"{_f(a['median_queued_to_running_s'])} | {_f(a['median_running_s'])} | "
            f"{_f(a['median_in_task_overhead_s'])}{estimated} | {_f(a['median_overhead_s'])}{estimated} | "
            f"{_f(airflow_cpu, 1)} | {_f(cpu.get('postgres'), 1)} |"
        )
    parts = [(key, r["analysis"]["critical_path_parts"], r["wall_s"], r["analysis"]) for key, r in runs]
    lines += [
        "",
        "Where the scheduled runs' wall time goes, along the critical path (the chain of tasks that ended last):",
        "",
        "| part | " + " | ".join(LABELS[k] for k, *_ in parts) + " |",
        "|---|" + "---:|" * len(parts),
    ]
    for name in parts[0][1]:
        lines.append(
            f"| {name} | " + " | ".join(f"{_f(p.get(name))} ({_pct(p.get(name), w)})" for _, p, w, _ in parts) + " |"
        )
    lines.append("| tasks on the path | " + " | ".join(str(len(a["critical_path"])) for *_, a in parts) + " |")
    if any(k[0] == "cosmos_scheduled" for k, *_ in parts):
        lines.append(
            "\nCosmos' task work is estimated from the dbt build contender's node times on the same data"
            " (a model's run, the sum of its tests)."
        )
    slow = _slowest_overheads(runs)
    if slow:
        lines.append("\nLargest per-task overheads (queued -> done minus work): " + slow)
    return lines


def _slowest_overheads(runs) -> str:
    out = []
    for key, r in runs:
        tasks = [(t, v) for t, v in r["tasks"].items() if v.get("overhead_s") is not None]
        if not tasks:
            continue
        values = [v["overhead_s"] for _, v in tasks]
        top = sorted(tasks, key=lambda tv: -tv[1]["overhead_s"])[:3]
        out.append(
            f"{LABELS[key]}: mean {statistics.mean(values):.2f} s; "
            + ", ".join(f"{t} {v['overhead_s']:.2f} s" for t, v in top)
        )
    return "; ".join(out)
