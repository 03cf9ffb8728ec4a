"""Runs left behind by a killed `greenery run` are failed, and paged, once: by whichever command finds them first
(README, *The CLI*: "one command claims a file before failing its run, so two that find it at once page once"), and
still by a later one when the command that claimed one was itself killed before it had failed it.

The commands here are real processes racing on one registry folder; what fails a run in Airflow and what pages are
replaced by lines appended to a file (`fail_run` and `_page` are covered end to end by `test_cli`'s kill test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from greenery.dev import cli_runs

# One command: waits for the start file, then fails what it finds left behind, recording each failure and page.
COMMAND = textwrap.dedent(
    """
    import os, random, sys, time
    from pathlib import Path
    from greenery.dev import cli_runs

    record, go, crash_after_claim = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "crash"

    def note(line):
        with open(record, "a") as out:  # O_APPEND: one write per line, whole, whatever the others do
            out.write(f"{line} {os.getpid()}\\n")

    def fail_run(dag_id, logical_date, started=None):
        if crash_after_claim:
            os._exit(9)  # killed between its claim and its page
        time.sleep(random.random() / 200)  # the metadata database's time: lets the others overtake
        note(f"failed {logical_date.date()}")
        return f"run-{logical_date.date()}"

    def page(dag_id, day, run_id, went_out, what):
        note(f"paged {day}")
        return "on-call was paged"

    cli_runs.fail_run, cli_runs._page, cli_runs.published = fail_run, page, lambda run_id: False
    while not go.exists():
        time.sleep(0.001)
    print(len(cli_runs.fail_abandoned_runs()))
    """
)


def _gone_pid() -> int:
    """The pid of a process that has ended."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _list(registry: Path, name: str, day: int, started: str | None) -> None:
    owned = {"dag_id": "greenery_daily", "logical_date": f"2021-01-{day:02d}T06:00:00+00:00", "started": started}
    (registry / name).write_text(json.dumps(owned))


def _commands(home: Path, record: Path, how: list[str]) -> list[tuple[int, subprocess.CompletedProcess]]:
    """Start one command per entry of ``how`` ("race" or "crash"), let them go at once, wait for them."""
    go = home / "go"
    go.unlink(missing_ok=True)
    env = {**os.environ, "AIRFLOW_HOME": str(home)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", COMMAND, str(record), str(go), mode],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for mode in how
    ]
    time.sleep(0.3)  # all imported and waiting
    go.touch()
    return [(p.pid, subprocess.CompletedProcess(p.args, p.wait(timeout=60), *p.communicate())) for p in procs]


def _lines(record: Path) -> list[str]:
    return [line.rsplit(" ", 1)[0] for line in record.read_text().splitlines()] if record.exists() else []


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    folder = tmp_path / cli_runs.REGISTRY
    folder.mkdir()
    return folder


def test_three_commands_finding_the_same_killed_runs_fail_and_page_each_once(registry: Path):
    home, record = registry.parent, registry.parent / "record"
    gone = _gone_pid()
    days = range(1, 31)
    for day in days:  # processes gone: their start no longer matches (a reused pid would not either)
        _list(registry, f"{gone + 100_000 + day}.json", day, "boot:0")
    _list(registry, f"{os.getpid()}.json", 31, cli_runs._start_of(os.getpid()))  # this one lives

    done = [result for _, result in _commands(home, record, ["race"] * 3)]

    assert all(d.returncode == 0 for d in done), [d.stderr for d in done]
    assert sum(int(d.stdout) for d in done) == len(days)  # each command says only what it failed
    lines = _lines(record)
    for day in days:
        assert lines.count(f"failed 2021-01-{day:02d}") == 1, lines
        assert lines.count(f"paged 2021-01-{day:02d}") == 1, lines
    assert len(lines) == 2 * len(days)
    assert [p.name for p in registry.iterdir()] == [f"{os.getpid()}.json"]  # the live run stays listed


def test_a_run_claimed_by_a_command_killed_before_it_failed_it_is_failed_by_the_next(registry: Path):
    home, record = registry.parent, registry.parent / "record"
    gone = _gone_pid()
    _list(registry, f"{gone}.json", 5, "boot:0")

    [(claimer, crashed)] = _commands(home, record, ["crash"])

    assert crashed.returncode == 9 and _lines(record) == []
    assert [p.name for p in registry.iterdir()] == [f"{gone}.failing-{claimer}"]
    # A claim whose claimer still runs is its claimer's: left alone.
    _list(registry, f"{gone + 1}.failing-{os.getpid()}", 6, "boot:0")

    [(_, later)] = _commands(home, record, ["race"])

    assert later.returncode == 0 and int(later.stdout) == 1, later.stderr
    assert _lines(record) == ["failed 2021-01-05", "paged 2021-01-05"]
    assert sorted(p.name for p in registry.iterdir()) == [f"{gone + 1}.failing-{os.getpid()}"]
