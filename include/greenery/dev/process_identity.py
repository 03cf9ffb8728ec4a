"""Whether a pid still names the process that listed it: a pid is reused, the start of a process is not."""

from __future__ import annotations

import os
from pathlib import Path


def alive(pid: int, started: str | None) -> bool:
    """Whether the process ``pid`` that started at ``started`` (:func:`start_of`) still runs. The start tells a
    reused pid apart (review: `greenery run` as a container's entrypoint gets the same pid at each start, and took
    its predecessor's run, left running, for its own: never failed). A file without it trusts the pid: never
    wrongly failed, only late."""
    if not isinstance(started, str):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's process
            return True
        return True
    return start_of(pid) == started


def start_of(pid: int) -> str | None:
    """When process ``pid`` started, or None when there is none: on Linux the boot's id and the clock ticks since
    boot (a wall-clock step moves psutil's create time by whole seconds, and a live run read as left behind:
    review); elsewhere psutil's create time."""
    try:
        ticks = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]  # field 22, starttime
        return f"{Path('/proc/sys/kernel/random/boot_id').read_text().strip()}:{ticks}"
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None  # Linux, and no such process
    except OSError:
        pass
    import psutil

    try:
        return repr(psutil.Process(pid).create_time())
    except psutil.NoSuchProcess:
        return None
