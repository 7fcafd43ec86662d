"""A run directory whose processes a supervisor started (``make prod``, scripts/prod.py), for
scripts/rolling_restart.py: ``DIR/prod.pid`` names the supervisor; ``restart`` asks it with SIGHUP
and reads the outcome it writes to ``DIR/rolling-restart.json`` (the contract: rolling_restart.py's
docstring). Only the standard library."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

from rolling_restart import log, running, wait_for

SUPERVISOR_PID = "prod.pid"
STATUS = "rolling-restart.json"


def supervisor(run_dir: Path) -> int | None:
    """The pid of the supervisor (scripts/prod.py) running in ``run_dir``, or None."""
    try:
        pid = int((run_dir / SUPERVISOR_PID).read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return None
    return pid if running(pid) and b"prod.py" in cmdline else None


def status(run_dir: Path) -> dict[str, Any]:
    """The last rolling restart's outcome that the supervisor wrote (``{"number": 0}``: none yet)."""
    try:
        return json.loads((run_dir / STATUS).read_text())
    except (FileNotFoundError, ValueError):
        return {"number": 0}


def write_status(run_dir: Path, number: int, state: str, message: str = "", steps: list[str] | None = None) -> None:
    """Write ``DIR/rolling-restart.json`` (written by the supervisor, read by ``restart``):
    ``steps``, the restart's progress lines so far, which ``restart`` prints as they come."""
    temporary = run_dir / f"{STATUS}.tmp"
    entry = {"number": number, "state": state, "message": message, "steps": steps or []}
    temporary.write_text(json.dumps(entry) + "\n")
    temporary.replace(run_dir / STATUS)


def restart_supervised(run_dir: Path, pid: int, timeout: float) -> int:
    """SIGHUP the supervisor and wait (``timeout`` seconds) for the restart's outcome, printing
    each step it writes; 0 or 1. A SIGHUP while a restart is under way is queued by the
    supervisor: one more restart follows it (so a checkout updated meanwhile is picked up), and
    this waits for that one."""
    before = status(run_dir)
    os.kill(pid, signal.SIGHUP)
    if before.get("state") == "running":
        log(f"a rolling restart is under way (supervisor pid {pid}): another one follows it")
        timeout *= 2
    else:
        log(f"asked the supervisor (pid {pid}) to restart its processes one at a time")
    printed: dict[int, int] = {}  # restart number -> steps printed

    def finished() -> bool:
        now = status(run_dir)
        steps = now.get("steps") or []
        number = now["number"]
        if number > before["number"] or now.get("state") == "running":
            for step in steps[printed.get(number, 0) :]:
                log(step)
            printed[number] = len(steps)
        return number > before["number"] and now.get("state") != "running"

    if not wait_for(lambda: finished() or not running(pid), timeout) or not finished():
        log(f"the supervisor (pid {pid}) did not finish the rolling restart in {timeout:g} s")
        return 1
    outcome = status(run_dir)
    log(f"rolling restart {outcome['state']}{': ' + outcome['message'] if outcome.get('message') else ''}")
    return 0 if outcome["state"] == "done" else 1
