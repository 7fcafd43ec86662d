"""Does the answer's time tell whether an account exists? ``POST /api/v1/login/magic/`` timed on a
live daphne for a known account (a message queued and sent) and for unknown names, interleaved.

One daphne (SQLite, DEBUG off, the file email backend, the throttle lifted) from tests/live.py;
``--rounds`` rounds, each one request for alice's email and one for an unknown email, in random
order, each from its own address (``X-Forwarded-For``, daphne run with ``--proxy-headers``).
Prints the p50 / p90 of both and their ratio. Numbers are for the note on a shared, noisy machine:
no thresholds here.

    .venv/bin/python bench/magic_link_timing.py --rounds 200
"""

import argparse
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import live


def ask(url: str, login: str, address: str) -> float:
    """POST a link request; returns its time in milliseconds (asserting the 202)."""
    body = json.dumps({"login": login}).encode()
    headers = {"Content-Type": "application/json", "Origin": url, "X-Forwarded-For": address}
    request = urllib.request.Request(url + "/api/v1/login/magic/", data=body, headers=headers)
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 202, response.status
        response.read()
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=200)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, live.processes(Path(folder)) as started:
        mail = Path(folder) / "mail"
        mail.mkdir()
        database = started.sqlite()
        with sqlite3.connect(database.removeprefix("sqlite:///")) as conn:
            conn.execute("UPDATE auth_user SET email = 'alice@example.com' WHERE username = 'alice'")
        server = started.daphne(
            database,
            args=("--proxy-headers",),
            EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
            EMAIL_FILE_PATH=str(mail),
            SESSIONS_MAGIC_LINK_LIMIT=1000000,
        )
        times: dict[str, list[float]] = {"known": [], "unknown": []}
        for n in range(options.rounds):
            pair = [("known", "alice@example.com"), ("unknown", f"nobody{n}@example.com")]
            random.shuffle(pair)
            for kind, login in pair:
                times[kind].append(ask(server.http, login, f"10.{n // 250}.{n % 250}.{1 if kind == 'known' else 2}"))
        sent = len(list(mail.glob("*")))
    for kind, values in times.items():
        cuts = statistics.quantiles(values, n=10)
        print(f"{kind:8} n={len(values)} p50={statistics.median(values):.1f} ms p90={cuts[8]:.1f} ms")
    ratio = statistics.median(times["known"]) / statistics.median(times["unknown"])
    print(f"known/unknown p50 ratio: {ratio:.2f}; messages written by the file backend: {sent}")


if __name__ == "__main__":
    main()
