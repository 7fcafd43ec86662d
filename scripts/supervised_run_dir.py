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


def write_status(run_dir: Path, number: int, state: str, message: str = "") -> None:
    """Write ``DIR/rolling-restart.json`` (written by the supervisor, read by ``restart``)."""
    temporary = run_dir / f"{STATUS}.tmp"
    temporary.write_text(json.dumps({"number": number, "state": state, "message": message}) + "\n")
    temporary.replace(run_dir / STATUS)


def restart_supervised(run_dir: Path, pid: int, timeout: float) -> int:
    """SIGHUP the supervisor and wait (``timeout`` seconds) for the restart's outcome; 0 or 1."""
    before = status(run_dir)
    if before.get("state") == "running":
        log(f"a rolling restart is already under way in {run_dir} (supervisor pid {pid})")
        return 1
    os.kill(pid, signal.SIGHUP)
    log(f"asked the supervisor (pid {pid}) to restart its processes one at a time")

    def finished() -> bool:
        now = status(run_dir)
        return now["number"] > before["number"] and now.get("state") != "running"

    if not wait_for(lambda: finished() or not running(pid), timeout) or not finished():
        log(f"the supervisor (pid {pid}) did not finish the rolling restart in {timeout:g} s")
        return 1
    outcome = status(run_dir)
    log(f"rolling restart {outcome['state']}{': ' + outcome['message'] if outcome.get('message') else ''}")
    return 0 if outcome["state"] == "done" else 1
