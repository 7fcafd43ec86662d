"""Benchmark data: databases (a SQLite file, a throwaway PostgreSQL database), users and tokens.

The database is migrated with the project's own `manage.py migrate`, so the peers and our server read
the same `auth_user` table. Until the project can migrate (while it is being written), the plain
Channels peer's settings migrate the auth tables instead, enough for the peers.

Servers, ports, Redis and PostgreSQL databases come from the launcher the tests use, tests/live.py:
this module puts the project root on `sys.path` for it, and the other benchmark modules take it
from here (`from fixtures import live`).
"""

from __future__ import annotations

import json
import logging
import secrets
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import jwt

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # bench/*.py run as scripts: sys.path[0] is bench/
from tests import live  # noqa: E402 - needs ROOT on sys.path

logger = logging.getLogger(__name__)

PEERS = ROOT / "bench" / "peers"
PYTHON = sys.executable
PASSWORD = "bench-Pw-31415"

# Creates the users bench0..bench{N-1} (bench0 with a password, the rest with unusable ones: hashing
# costs ~0.3 s each) and prints {username: id} as JSON on its last line.
SEED = """
import json
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
User = get_user_model()
names = ["bench%d" % i for i in range(COUNT)]
have = set(User.objects.filter(username__in=names).values_list("username", flat=True))
User.objects.bulk_create(
    [User(username=n, password=make_password(None)) for n in names if n not in have]
)
first = User.objects.get(username="bench0")
first.set_password(PASSWORD)
first.save()
print(json.dumps(dict(User.objects.filter(username__in=names).values_list("username", "id"))))
"""


@dataclass
class Database:
    """A migrated database with benchmark users; `url` is its DATABASE_URL."""

    url: str
    users: dict[str, int] = field(default_factory=dict)
    sqlite_path: Path | None = None
    pg_name: str | None = None


def project_ready() -> bool:
    """True when our server's code is there to be benchmarked (project/asgi.py exists)."""
    return (ROOT / "project" / "asgi.py").exists() and (ROOT / "manage.py").exists()


def _django(args: list[str], env: dict[str, str], *, peer_settings: bool) -> str:
    """Run a Django management command with the project's or the Channels peer's settings."""
    if peer_settings:
        cmd = [PYTHON, "-m", "django", *args, "--settings=channels_peer.settings"]
        env = {**env, "PYTHONPATH": str(PEERS)}
    else:
        cmd = [PYTHON, "manage.py", *args]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode:
        raise RuntimeError(f"{' '.join(args[:2])} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def prepare(db: Database, env: dict[str, str], users: int) -> Database:
    """Migrate `db` and create `users` benchmark users; fills `db.users`."""
    env = {**env, "DATABASE_URL": db.url}
    if db.sqlite_path:
        env["BENCH_SQLITE_PATH"] = str(db.sqlite_path)
    peer_settings = not project_ready()
    if peer_settings and not db.sqlite_path:
        raise RuntimeError("the project cannot migrate yet; only SQLite is available")
    started = time.perf_counter()
    _django(["migrate", "--noinput"], env, peer_settings=peer_settings)
    code = f"COUNT = {users}\nPASSWORD = {PASSWORD!r}\n" + SEED
    out = _django(["shell", "-c", code], env, peer_settings=peer_settings)
    db.users = json.loads(out.strip().splitlines()[-1])
    logger.info("migrated %s and created %d users in %.1fs", db.url, users, _since(started))
    return db


def sqlite_database(folder: Path) -> Database:
    """A fresh SQLite database file in `folder`."""
    path = folder / "bench.sqlite3"
    return Database(url=f"sqlite:///{path}", sqlite_path=path)


def sqlite_copy(db: Database, path: Path) -> Database:
    """A copy of the SQLite database `db` at `path` (same users and ids), made with SQLite's backup
    API so that a write-ahead log is included."""
    import sqlite3

    assert db.sqlite_path is not None
    with sqlite3.connect(db.sqlite_path) as src, sqlite3.connect(path) as dst:
        src.backup(dst)
    return Database(url=f"sqlite:///{path}", users=dict(db.users), sqlite_path=path)


def postgres_database() -> Database:
    """Create a throwaway PostgreSQL database `bench_<random>` on POSTGRES_TEST_URL's server."""
    name = live.pg_create("bench")
    return Database(url=live.pg_database_url(name), pg_name=name)


def drop_postgres(db: Database) -> None:
    """Drop the throwaway PostgreSQL database, closing what still uses it."""
    if db.pg_name:
        live.pg_drop(db.pg_name)


def postgres_available() -> bool:
    """True when PostgreSQL answers at POSTGRES_TEST_URL's server."""
    try:
        live.pg_query("SELECT 1")
    except Exception:  # noqa: BLE001 - any failure means "not available"
        return False
    return True


def access_token(secret: str, user_id: int, lifetime: int) -> str:
    """Mint a SimpleJWT-compatible access token (HS256 with the SECRET_KEY, SimpleJWT's default).

    SimpleJWT 5.5 itself writes `user_id` as a string; an int is what the brief asks for, and both
    must be accepted by a lookup on the primary key.
    """
    now = int(time.time())
    claims = {
        "token_type": "access",
        "exp": now + lifetime,
        "iat": now,
        "jti": uuid.uuid4().hex,
        "user_id": user_id,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def _since(start: float) -> float:
    return time.perf_counter() - start


def new_secret() -> str:
    """A random SECRET_KEY for one benchmark run."""
    return "bench-" + secrets.token_urlsafe(32)
