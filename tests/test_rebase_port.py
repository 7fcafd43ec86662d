"""static/sessions/rebase.js is a port of sessions_app/rebase.py: on random cases both give the
same operations (or both a conflict), so a client's view of its pending changes is exactly what the
server will apply. Runs node (installed with the dev tools, as for tests/js)."""

import copy
import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonpatch
import pytest

from sessions_app.rebase import RebaseConflict, rebase
from tests.test_rebase import random_document, random_patch

RUNNER = Path(__file__).parent / "js" / "rebase_port.mjs"


def python_side(case: dict[str, Any]) -> Any:
    try:
        return rebase(case["ops"], case["changes"], lambda: case["current"], left=case["left"])
    except RebaseConflict:
        return "conflict"


def test_the_javascript_port_agrees_with_the_server_on_random_cases() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed (the JavaScript client's tests need it too)", pytrace=False)
    rng = random.Random(15)
    cases = []
    for _ in range(3000):
        base = random_document(rng)
        counter = [0]
        document = copy.deepcopy(base)
        changes = []
        for _ in range(rng.randint(0, 3)):
            _, ops = random_patch(rng, document, counter)
            document = jsonpatch.apply_patch(document, ops)
            changes.append(ops)
        _, ops = random_patch(rng, copy.deepcopy(base), counter)
        cases.append({"ops": ops, "changes": changes, "current": document, "left": rng.random() < 0.8})
    result = subprocess.run(  # noqa: S603 - our own script, no shell
        [node, str(RUNNER)], input=json.dumps(cases), capture_output=True, text=True, timeout=120, check=True
    )
    javascript = json.loads(result.stdout)
    python = [python_side(case) for case in cases]
    differing = [(case, p, j) for case, p, j in zip(cases, python, javascript, strict=True) if p != j]
    assert not differing, differing[:3]
    assert sum(p == "conflict" for p in python) < len(python) // 2  # the cases exercise transforms
