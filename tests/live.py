"""Real servers for fault tests: a private redis-server, daphne processes of this project, fresh
databases (SQLite files or PostgreSQL databases), tokens from the REST API and a small WebSocket
client (the ``websockets`` library, like ../shared/conformance/wsclient.py).

Everything a test starts goes through a ``Processes`` context manager, whose exit stops it all
(daphne first, then Redis, then databases are dropped); every wait is bounded. The machine's shared
Redis (6379) and PostgreSQL are never stopped or flushed: Redis here is always a private
``redis-server`` on a free port, and PostgreSQL databases are created for the test and dropped.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "faults-Pw-27182"
USERS = ("alice", "bob", "carol", "dave", "erin")
SECRET_KEY = secrets.token_hex(32)  # one per test run; daphne processes of a run share it
SOCKET_PATH = "/api/v1/socket"
POSTGRES_TEST_URL = os.environ.get("POSTGRES_TEST_URL", "postgres://postgres@127.0.0.1:5432/interactive")
TIMEOUT = 5.0


def free_port() -> int:
    """A TCP port nobody listens on right now (OS-assigned)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns a truthy value (returned); AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


def _end(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10) -> None:
    """Send ``sig`` to a child we started, wait (bounded), SIGKILL it if it lingers."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


# --- Redis ---------------------------------------------------------------------------------------


class RedisServer:
    """A private ``redis-server`` (no persistence) on a free port; ``stop()`` and ``start()`` keep the port."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.workdir = workdir
        self.log_path = workdir / f"redis-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        argv += ["--daemonize", "no", "--dir", str(self.workdir)]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        wait_until(lambda: self.process.poll() is not None or self.ping(), 10, f"redis-server on {self.port}")
        if self.process.poll() is not None:
            raise RuntimeError(f"redis-server exited: {self.log_path.read_text()}")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop it (SIGKILL for a crash); the port is free again when this returns."""
        if self.process is not None:
            _end(self.process, sig)
            self.process = None
        wait_until(lambda: not _listening(self.port), 5, f"port {self.port} to close")


# --- databases -----------------------------------------------------------------------------------


def base_env(database_url: str, redis_url: str | None = None, **settings: Any) -> dict[str, str]:
    """The environment of a production-like daphne (DEBUG off) with ``settings`` as variables."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    for key in ("REDIS_URL", "DATABASE_URL", "CHANNEL_LAYER_BACKEND"):
        env.pop(key, None)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "DJANGO_SECRET_KEY": SECRET_KEY,
            "DJANGO_DEBUG": "0",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": database_url,
            "PYTHONUNBUFFERED": "1",
        }
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update({key: str(value) for key, value in settings.items()})
    return env


def manage(env: dict[str, str], *args: str, timeout: float = 180) -> str:
    """Run ``manage.py`` with ``env``; return its stdout, raise with its output if it fails."""
    result = subprocess.run(  # noqa: S603 - our own interpreter and manage.py
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def prepare_database(database_url: str, users: tuple[str, ...] = USERS) -> None:
    """Migrate the database at ``database_url`` and create ``users`` with ``PASSWORD``."""
    env = base_env(database_url)
    manage(env, "migrate", "--noinput")
    code = (
        "from django.contrib.auth import get_user_model\n"
        "User = get_user_model()\n"
        f"for name in {tuple(users)!r}:\n"
        "    user, _ = User.objects.get_or_create(username=name)\n"
        f"    user.set_password({PASSWORD!r})\n"
        "    user.save()\n"
    )
    manage(env, "shell", "-c", code)


@functools.cache
def _sqlite_template() -> Path:
    """A migrated SQLite database with ``USERS``, made once per test process and copied per server."""
    folder = Path(tempfile.mkdtemp(prefix="faults-template-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = folder / "template.sqlite3"
    prepare_database(f"sqlite:///{path}")
    return path


def sqlite_database(path: Path) -> str:
    """A fresh copy of the template database at ``path``; returns its DATABASE_URL."""
    shutil.copyfile(_sqlite_template(), path)
    return f"sqlite:///{path}"


def sqlite_query(database_url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run a read query on a SQLite DATABASE_URL from the test (its own short connection)."""
    path = database_url.removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as conn:
        return conn.execute(sql, params).fetchall()


def pg_admin_url(url: str = POSTGRES_TEST_URL) -> str:
    """The server's ``postgres`` maintenance database (never the test database itself)."""
    return urlunsplit(urlsplit(url)._replace(path="/postgres"))


def pg_query(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run a statement on the maintenance database (autocommit); returns the rows (if any)."""
    import psycopg

    with psycopg.connect(pg_admin_url(), autocommit=True, connect_timeout=5) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def pg_database_url(name: str) -> str:
    return urlunsplit(urlsplit(POSTGRES_TEST_URL)._replace(path=f"/{name}"))


@functools.cache
def _pg_template() -> str:
    """A migrated PostgreSQL database with ``USERS``, made once per test process (dropped at exit)."""
    name = f"faults_template_{secrets.token_hex(6)}"
    pg_query(f'CREATE DATABASE "{name}"')
    atexit.register(pg_query, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    prepare_database(pg_database_url(name))
    return name


# --- daphne --------------------------------------------------------------------------------------


class Daphne:
    """One daphne process serving ``project.asgi:application``; its stdout and stderr go to ``log_path``."""

    def __init__(
        self,
        workdir: Path,
        env: dict[str, str],
        args: tuple[str, ...] = (),
        application: str = "project.asgi:application",
    ) -> None:
        self.port = free_port()
        self.env = env
        self.args = args
        self.application = application
        self.log_path = workdir / f"daphne-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        argv = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), *self.args]
        argv.append(self.application)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        process = self.process
        wait_until(lambda: process.poll() is not None or _listening(self.port), 30, f"daphne on {self.port}")
        if process.poll() is not None:
            raise RuntimeError(f"daphne exited with {process.returncode}:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the process: SIGTERM as a deploy does, SIGKILL for a crash."""
        if self.process is not None:
            _end(self.process, sig)
            self.process = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def rss_kib(self) -> int:
        """Resident set size of the process, KiB (from /proc)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    # HTTP ---------------------------------------------------------------------------------------

    def token(self, username: str, password: str = PASSWORD) -> str:
        """An access token from ``POST /api/v1/token/``."""
        return self.token_pair(username, password)["access"]

    def token_pair(self, username: str, password: str = PASSWORD) -> dict[str, str]:
        status, body = http_json(self.http + "/api/v1/token/", {"username": username, "password": password})
        assert status == 200, (status, body)
        return body

    def get(self, path: str) -> tuple[int, Any]:
        return http_json(self.http + path)


class Uvicorn(Daphne):
    """One uvicorn process (``--ws auto``, ``--lifespan off``) serving ``application``, with daphne's
    interface; the process is the server (no ``--workers``), so ``rss_kib`` is uvicorn's own."""

    def __init__(
        self,
        workdir: Path,
        env: dict[str, str],
        args: tuple[str, ...] = (),
        application: str = "project.asgi:application",
    ) -> None:
        super().__init__(workdir, env, args, application)
        self.log_path = workdir / f"uvicorn-{self.port}.log"

    def start(self) -> None:
        argv = [sys.executable, "-m", "uvicorn", self.application, "--host", "127.0.0.1", "--port", str(self.port)]
        argv += ["--lifespan", "off", *self.args]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        process = self.process
        wait_until(lambda: process.poll() is not None or _listening(self.port), 30, f"uvicorn on {self.port}")
        if process.poll() is not None:
            raise RuntimeError(f"uvicorn exited with {process.returncode}:\n{self.log()}")


def http_json(url: str, payload: Any = None, timeout: float = 10) -> tuple[int, Any]:
    """GET (or POST ``payload`` as JSON); returns ``(status, decoded body)`` for 2xx to 5xx alike."""
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback test server
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


# --- the set of things a test started -----------------------------------------------------------


class Processes:
    """Starts servers and databases for one test and always stops them (use as a context manager)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.daphnes: list[Daphne] = []
        self.redises: list[RedisServer] = []
        self.pg_databases: list[str] = []

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        for server in self.daphnes:
            server.stop()
        for redis in self.redises:
            redis.stop(signal.SIGKILL)
        for name in self.pg_databases:
            pg_query(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def redis(self) -> RedisServer:
        server = RedisServer(self.workdir)
        self.redises.append(server)
        server.start()
        return server

    def sqlite(self) -> str:
        """A fresh migrated SQLite database with ``USERS``; returns its DATABASE_URL."""
        return sqlite_database(self.workdir / f"db-{secrets.token_hex(4)}.sqlite3")

    def postgres(self) -> tuple[str, str]:
        """A fresh migrated PostgreSQL database with ``USERS``; returns ``(name, DATABASE_URL)``."""
        template = _pg_template()
        name = f"faults_{secrets.token_hex(6)}"
        pg_query(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        self.pg_databases.append(name)
        return name, pg_database_url(name)

    def daphne(
        self,
        database_url: str,
        redis_url: str | None = None,
        *,
        args: tuple[str, ...] = (),
        application: str = "project.asgi:application",
        **settings: Any,
    ) -> Daphne:
        """Start a daphne serving ``application`` on ``database_url`` (and Redis when given) with
        ``settings`` as variables."""
        server = Daphne(self.workdir, base_env(database_url, redis_url, **settings), args, application)
        self.daphnes.append(server)
        server.start()
        return server

    def uvicorn(
        self,
        database_url: str,
        redis_url: str | None = None,
        *,
        args: tuple[str, ...] = (),
        application: str = "project.asgi:application",
        **settings: Any,
    ) -> Uvicorn:
        """As ``daphne``, with uvicorn (stopped with the daphnes, first)."""
        server = Uvicorn(self.workdir, base_env(database_url, redis_url, **settings), args, application)
        self.daphnes.append(server)
        server.start()
        return server


@contextlib.contextmanager
def processes(workdir: Path) -> Iterator[Processes]:
    with Processes(workdir) as started:
        yield started


# --- a WebSocket client -------------------------------------------------------------------------

_ids = itertools.count(1)


class Closed(Exception):
    """The server closed the connection (``code``: the close code, None without a close frame)."""

    def __init__(self, code: int | None) -> None:
        super().__init__(f"connection closed with code {code}")
        self.code = code


class Client:
    """A protocol client over a real socket; pushes seen while waiting for replies go to ``pushes``."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.pushes: list[dict[str, Any]] = []
        self.user: dict[str, Any] | None = None

    async def send(self, frame: Any) -> None:
        try:
            await self.ws.send(json.dumps(frame))
        except ConnectionClosed as exc:
            raise Closed(exc.rcvd.code if exc.rcvd else None) from None

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        try:
            raw = await asyncio.wait_for(self.ws.recv(), timeout)
        except ConnectionClosed as exc:
            raise Closed(exc.rcvd.code if exc.rcvd else None) from None
        return json.loads(raw)

    async def request(self, state: str, data: Any = None, timeout: float = TIMEOUT) -> dict[str, Any]:
        """Send ``{state, data, id}``; return the reply or error with that id."""
        rid = f"r{next(_ids)}"
        frame: dict[str, Any] = {"state": state, "id": rid}
        if data is not None:
            frame["data"] = data
        await self.send(frame)
        deadline = time.monotonic() + timeout
        while True:
            msg = await self.recv(max(0.01, deadline - time.monotonic()))
            if msg.get("id") == rid:
                return msg
            self.pushes.append(msg)

    async def ok(self, state: str, data: Any = None, timeout: float = TIMEOUT) -> dict[str, Any]:
        """A request that must succeed; returns its reply data."""
        reply = await self.request(state, data, timeout)
        assert reply.get("state") == state, f"{state} failed: {reply}"
        return reply["data"]

    async def push(
        self, state: str, timeout: float = TIMEOUT, where: Callable[[dict[str, Any]], bool] = lambda d: True
    ) -> dict[str, Any]:
        """The next push of ``state`` whose data satisfies ``where`` (others are kept)."""
        for index, msg in enumerate(self.pushes):
            if msg.get("state") == state and "id" not in msg and where(msg.get("data", {})):
                return self.pushes.pop(index)
        deadline = time.monotonic() + timeout
        while True:
            msg = await self.recv(max(0.01, deadline - time.monotonic()))
            if msg.get("state") == state and "id" not in msg and where(msg.get("data", {})):
                return msg
            self.pushes.append(msg)

    async def no_push(self, state: str, wait: float, where: Callable[[dict[str, Any]], bool] = lambda d: True) -> None:
        """Assert that no push of ``state`` (matching ``where``) arrives within ``wait`` seconds."""
        try:
            msg = await self.push(state, timeout=wait, where=where)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected push: {msg}")

    async def closed(self, timeout: float = TIMEOUT) -> int | None:
        """Wait for the server's close; return its code (frames on the way are kept)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.pushes.append(await self.recv(max(0.01, deadline - time.monotonic())))
            except Closed as exc:
                return exc.code

    def abort(self) -> None:
        """Vanish: drop the TCP connection at once (RST, no close frame)."""
        sock = self.ws.transport.get_extra_info("socket")
        if sock is not None:
            # SO_LINGER 0: the kernel sends a reset instead of a FIN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.ws.transport.abort()

    async def close(self) -> None:
        await self.ws.close()


async def open_client(ws_url: str, *, query: str = "", timeout: float = TIMEOUT) -> Client:
    ws = await connect(
        ws_url + SOCKET_PATH + query, compression=None, open_timeout=timeout, ping_interval=None, max_size=2**24
    )
    return Client(ws)


async def login(ws_url: str, token: str, *, query: str = "") -> Client:
    """Open a connection and complete the handshake; returns the client with ``user`` set."""
    client = await open_client(ws_url, query=query)
    await client.send({"token": token})
    first = await client.recv()
    assert first.get("state") == "initialised", f"handshake failed: {first}"
    client.user = first["data"]["user"]
    return client


@contextlib.asynccontextmanager
async def clients() -> Any:
    """Collects clients and closes (or aborts) all of them at the end, whatever happened."""
    opened: list[Client] = []
    try:
        yield opened
    finally:
        for client in opened:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.ws.close(), 2)
            with contextlib.suppress(Exception):
                client.ws.transport.abort()
