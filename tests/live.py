"""The one launcher of real servers, for the tests and the benchmarks (bench/ imports it too).

Free ports, server processes (daphne and uvicorn serving this project, a private ``redis-server``,
any other command such as the benchmark's peers), fresh databases (SQLite files or PostgreSQL
databases, migrated, with users) and tokens from the REST API. The protocol client for these
servers is tests/wsclient.py.

Everything a test starts goes through a ``Processes`` context manager, whose exit stops it all
(servers first, then Redis, then databases are dropped); every wait is bounded. The machine's shared
Redis (6379) and PostgreSQL are never stopped or flushed: Redis here is always a private
``redis-server`` on a free port, and PostgreSQL databases are created for the test and dropped.
Only the standard library (and psycopg, for PostgreSQL) is imported: no Django, no pytest.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import functools
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "live-Pw-27182"
USERS = ("alice", "bob", "carol", "dave", "erin")
SECRET_KEY = secrets.token_hex(32)  # one per run; the servers of a run share it
SOCKET_PATH = "/api/v1/socket"
POSTGRES_TEST_URL = os.environ.get("POSTGRES_TEST_URL", "postgres://postgres@127.0.0.1:5432/interactive")
# Databases made here are named after POSTGRES_TEST_URL's (``<name>_live_<random>``): runs given
# different test databases on one server never meet.
PG_PREFIX = urlsplit(POSTGRES_TEST_URL).path.strip("/") or "interactive"
TIMEOUT = 5.0

_handed_out: set[int] = set()


def free_port(ports: Iterable[int] | None = None) -> int:
    """A TCP port nobody listens on now and that this process has not handed out before (servers
    spawned together must not get the same one): OS-assigned, or the first such port of ``ports``."""
    for candidate in itertools.repeat(0, 50) if ports is None else ports:
        if candidate in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            port = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError("no free port left" + ("" if ports is None else f" in {ports}"))


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


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


# --- server processes ----------------------------------------------------------------------------


class Server:
    """One server process on 127.0.0.1:``port``: ``argv`` with ``{port}`` filled in, pinned to
    ``cpu`` with taskset when given (taskset execs, so ``pid`` is the server's), its output in
    ``<name>-<port>.log`` in ``workdir``. It runs in a process group of its own, which ``stop``
    signals (by the server's id). ``stop()`` then ``start()`` again keeps the port."""

    def __init__(
        self,
        workdir: Path,
        env: dict[str, str],
        argv: Sequence[str],
        *,
        name: str = "server",
        port: int | None = None,
        ports: Iterable[int] | None = None,
        cpu: str | None = None,
        start_timeout: float = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.port = port or free_port(ports)
        self.env = env
        self.argv = tuple(argv)
        self.name = name
        self.cpu = cpu
        self.start_timeout, self.stop_timeout = start_timeout, stop_timeout
        self.log_path = workdir / f"{name}-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def socket_url(self) -> str:
        """The protocol's WebSocket endpoint."""
        return self.ws + SOCKET_PATH

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} is not running"
        return self.process.pid

    def command(self) -> list[str]:
        argv = [arg.replace("{port}", str(self.port)) for arg in self.argv]
        if self.cpu is not None and shutil.which("taskset"):
            argv = ["taskset", "-c", self.cpu, *argv]
        return argv

    def spawn(self) -> None:
        """Start the process without waiting for it to listen (see ``wait_ready``)."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own commands
                self.command(),
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def ready(self) -> bool:
        return listening(self.port)

    def wait_ready(self) -> None:
        """Wait until it serves; stop it and raise with its log's tail if it exits or does not."""
        process = self.process
        assert process is not None
        deadline = time.monotonic() + self.start_timeout
        while process.poll() is None and not self.ready():
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"{self.name} did not listen on {self.port} in {self.start_timeout} s:\n{self.tail()}"
                )
            time.sleep(0.05)
        if process.poll() is not None:
            self.process = None
            raise RuntimeError(f"{self.name} exited with {process.returncode}:\n{self.tail()}")

    def start(self) -> None:
        self.spawn()
        self.wait_ready()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop it: SIGTERM as a deploy does (SIGKILL if it lingers ``stop_timeout`` s), SIGKILL for a crash."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, chars: int = 6000) -> str:
        return self.log()[-chars:]

    def rss_kib(self) -> int:
        """Resident set size of the process, KiB (from /proc)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far (from /proc)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def twin(self) -> Self:
        """Another process like this one (same command and environment) on a port of its own, not started."""
        twin = copy.copy(self)
        twin.port = free_port()
        twin.log_path = self.log_path.with_name(f"{self.name}-{twin.port}.log")
        twin.process = None
        return twin

    # HTTP, for servers of this project -----------------------------------------------------------

    def token(self, username: str, password: str = PASSWORD) -> str:
        """An access token from ``POST /api/v1/token/``."""
        return self.token_pair(username, password)["access"]

    def token_pair(self, username: str, password: str = PASSWORD) -> dict[str, str]:
        status, body = http_json(self.http + "/api/v1/token/", {"username": username, "password": password})
        assert status == 200, (status, body)
        return body

    def get(self, path: str) -> tuple[int, Any]:
        return http_json(self.http + path)


class Daphne(Server):
    """daphne serving ``application`` (this project's by default) with the options ``args``."""

    def __init__(
        self,
        workdir: Path,
        env: dict[str, str],
        args: tuple[str, ...] = (),
        application: str = "project.asgi:application",
        **options: Any,
    ) -> None:
        super().__init__(workdir, env, self.server_argv(application, args), name=type(self).__name__.lower(), **options)

    @staticmethod
    def server_argv(application: str, args: tuple[str, ...]) -> tuple[str, ...]:
        return (sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", "{port}", *args, application)


class Uvicorn(Daphne):
    """uvicorn (``--ws auto``, ``--lifespan off``) serving ``application``, as ``Daphne`` does; the
    process is the server (no ``--workers``), so ``rss_kib`` is uvicorn's own."""

    @staticmethod
    def server_argv(application: str, args: tuple[str, ...]) -> tuple[str, ...]:
        options = ("--host", "127.0.0.1", "--port", "{port}", "--lifespan", "off", *args)
        return (sys.executable, "-m", "uvicorn", application, *options)


class RedisServer(Server):
    """A private ``redis-server`` (no persistence) on a free port, with ``args`` added (e.g.
    ``("--replicaof", "127.0.0.1", "<port>")``); ``stop()`` and ``start()`` keep the port."""

    def __init__(
        self, workdir: Path, port: int | None = None, ports: Iterable[int] | None = None, args: Sequence[str] = ()
    ) -> None:
        argv = ["redis-server", "--port", "{port}", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        # A file of its own: a replica writes the primary's snapshot there at its first sync.
        argv += ["--daemonize", "no", "--dir", str(workdir), "--dbfilename", "dump-{port}.rdb", *args]
        super().__init__(workdir, dict(os.environ), argv, name="redis", port=port, ports=ports, start_timeout=10)

    def command_reply(self, *args: str) -> Any:
        """One command's reply (``redis_command``)."""
        return redis_command(self.port, *args)

    def info(self, section: str) -> dict[str, str]:
        """``INFO <section>`` as ``{field: value}``."""
        text = self.command_reply("INFO", section)
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def ready(self) -> bool:
        return self.ping()

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop it (SIGKILL for a crash); the port is free again when this returns."""
        super().stop(sig)
        wait_until(lambda: not listening(self.port), 5, f"port {self.port} to close")


class RedisSentinel(RedisServer):
    """A private ``redis-sentinel`` (Debian's package) on a free port, monitoring ``primary`` as
    ``master``: ``quorum`` sentinels must agree that it is down, which each thinks after
    ``down_after_ms`` without an answer; ``failover_timeout_ms`` bounds a failover attempt (and is
    the wait before another sentinel may try again). Its configuration file (which the sentinel
    rewrites with what it learns) is ``sentinel-<port>.conf`` in ``workdir``. RuntimeError when
    the binary is missing: a test that needs it fails, never skips."""

    def __init__(
        self,
        workdir: Path,
        primary: RedisServer,
        *,
        master: str = "mymaster",
        quorum: int = 2,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
    ) -> None:
        binary = shutil.which("redis-sentinel")
        if binary is None:
            raise RuntimeError("redis-sentinel is not installed (Debian: apt-get install redis-sentinel)")
        Server.__init__(self, workdir, dict(os.environ), (), name="sentinel", start_timeout=10)
        self.master = master
        conf = workdir / f"sentinel-{self.port}.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndaemonize no\ndir {workdir}\n"
            f"sentinel monitor {master} 127.0.0.1 {primary.port} {quorum}\n"
            f"sentinel down-after-milliseconds {master} {down_after_ms}\n"
            f"sentinel failover-timeout {master} {failover_timeout_ms}\n"
            f"sentinel parallel-syncs {master} 1\n"
        )
        self.argv = (binary, str(conf))

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def primary_port(self) -> int | None:
        """The port of the primary this sentinel names now (``SENTINEL get-master-addr-by-name``)."""
        reply = self.command_reply("SENTINEL", "get-master-addr-by-name", self.master)
        return int(reply[1]) if reply else None

    def knows(self, replicas: int, sentinels: int) -> bool:
        """Whether it has found ``replicas`` replicas of its primary and ``sentinels`` other sentinels."""
        state = self.command_reply("SENTINEL", "master", self.master)
        fields = dict(zip(state[::2], state[1::2], strict=True))
        return int(fields["num-slaves"]) >= replicas and int(fields["num-other-sentinels"]) >= sentinels


def redis_command(port: int, *args: str, timeout: float = 2.0) -> Any:
    """Send one command to the Redis (or sentinel) on 127.0.0.1:``port`` and return its decoded
    reply: str, int, None, or a list of them; RuntimeError for an error reply. The standard library
    only (this module imports no redis client)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(
            b"".join([f"*{len(args)}\r\n".encode()] + [b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args])
        )
        return _resp_reply(sock.makefile("rb"))


def _resp_reply(stream: Any) -> Any:
    line = stream.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:].decode()
    if kind == b"+":
        return rest
    if kind == b"-":
        raise RuntimeError(rest)
    if kind == b":":
        return int(rest)
    if kind == b"$":
        return None if rest == "-1" else stream.read(int(rest) + 2)[:-2].decode()
    if kind == b"*":
        return None if rest == "-1" else [_resp_reply(stream) for _ in range(int(rest))]
    raise RuntimeError(f"unexpected reply {line!r}")


def http_json(url: str, payload: Any = None, timeout: float = 10) -> tuple[int, Any]:
    """GET (or POST ``payload`` as JSON); returns ``(status, decoded body)`` for 2xx to 5xx alike."""
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback test server
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


# --- environments and databases ------------------------------------------------------------------

# The project's settings that a server must not inherit from whoever runs the tests or benchmarks.
_INHERITED = ("REDIS_URL", "REDIS_PASSWORD", "DATABASE_URL", "LOG_LEVEL")
_INHERITED_PREFIXES = ("PYTEST_", "SESSIONS_", "JWT_", "CHANNEL_LAYER_", "REDIS_SENTINEL")


def base_env(
    database_url: str, redis_url: str | None = None, *, secret_key: str = SECRET_KEY, **settings: Any
) -> dict[str, str]:
    """The environment of a production-like server (DEBUG off) with ``settings`` as variables."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in _INHERITED and not key.startswith(_INHERITED_PREFIXES)
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "DJANGO_SECRET_KEY": secret_key,
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
        raise RuntimeError(f"manage.py {' '.join(args)[:80]} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout


def prepare_database(database_url: str, users: Iterable[str] = USERS, password: str = PASSWORD) -> dict[str, int]:
    """Migrate the database at ``database_url`` and make ``users`` (created, or given ``password``
    again), all with one password hash (hashing costs a fraction of a second each); returns their ids."""
    env = base_env(database_url)
    manage(env, "migrate", "--noinput", timeout=600)
    code = (
        "import json\n"
        "from django.contrib.auth import get_user_model\n"
        "from django.contrib.auth.hashers import make_password\n"
        "User = get_user_model()\n"
        f"names = {list(users)!r}\n"
        f"hashed = make_password({password!r})\n"
        "User.objects.filter(username__in=names).update(password=hashed, is_active=True)\n"
        "have = set(User.objects.filter(username__in=names).values_list('username', flat=True))\n"
        "User.objects.bulk_create([User(username=n, password=hashed) for n in names if n not in have])\n"
        "print(json.dumps(dict(User.objects.filter(username__in=names).values_list('username', 'id'))))\n"
    )
    return json.loads(manage(env, "shell", "-c", code, timeout=600).strip().splitlines()[-1])


@functools.cache
def _sqlite_template() -> Path:
    """A migrated SQLite database with ``USERS``, made once per process and copied per server."""
    folder = Path(tempfile.mkdtemp(prefix="live-template-"))
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


def pg_create(prefix: str, template: str | None = None) -> str:
    """Create the database ``<prefix>_<random>`` (empty, or a copy of ``template``); returns its name."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    pg_query(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return name


def pg_drop(name: str) -> None:
    """Drop a database made by ``pg_create``, closing what still uses it."""
    pg_query(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@functools.cache
def _pg_template() -> str:
    """A migrated PostgreSQL database with ``USERS``, made once per process (dropped at exit)."""
    name = pg_create(f"{PG_PREFIX}_live_template")
    atexit.register(pg_drop, name)
    prepare_database(pg_database_url(name))
    return name


S = TypeVar("S", bound=Server)


# --- the set of things a test started -----------------------------------------------------------


class Processes:
    """Starts servers and databases for one test or benchmark and always stops them (use as a
    context manager)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.servers: list[Server] = []
        self.redises: list[RedisServer] = []
        self.pg_databases: list[str] = []

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        for server in self.servers:
            server.stop()
        for redis in self.redises:
            redis.stop(signal.SIGKILL)
        for name in self.pg_databases:
            pg_drop(name)

    def start(self, server: S) -> S:
        """Start ``server`` (any command) and stop it with the others."""
        self.servers.append(server)
        server.start()
        return server

    def redis(self, *args: str) -> RedisServer:
        """A private redis-server started with ``args`` (``RedisServer``)."""
        server = RedisServer(self.workdir, args=args)
        self.redises.append(server)
        server.start()
        return server

    def replica(self, primary: RedisServer) -> RedisServer:
        """A private redis-server replicating ``primary``, returned once its link is up."""
        replica = self.redis("--replicaof", "127.0.0.1", str(primary.port))
        wait_until(lambda: replica.info("replication").get("master_link_status") == "up", 20, "the replica to sync")
        return replica

    def sentinels(self, primary: RedisServer, count: int = 3, replicas: int = 1, **options: Any) -> list[RedisSentinel]:
        """``count`` redis-sentinel processes monitoring ``primary`` (``RedisSentinel`` options),
        returned once each has found ``replicas`` replicas and the other sentinels (without them a
        failover cannot get its majority)."""
        started = []
        for _ in range(count):
            sentinel = RedisSentinel(self.workdir, primary, **options)
            self.redises.append(sentinel)
            sentinel.start()
            started.append(sentinel)
        for sentinel in started:
            wait_until(
                lambda s=sentinel: s.knows(replicas, count - 1), 30, f"sentinel {sentinel.port} to find its peers"
            )
        return started

    def sqlite(self) -> str:
        """A fresh migrated SQLite database with ``USERS``; returns its DATABASE_URL."""
        return sqlite_database(self.workdir / f"db-{secrets.token_hex(4)}.sqlite3")

    def postgres(self, prefix: str = f"{PG_PREFIX}_live") -> tuple[str, str]:
        """A fresh migrated PostgreSQL database ``<prefix>_<random>`` with ``USERS``; returns
        ``(name, DATABASE_URL)``."""
        name = pg_create(prefix, template=_pg_template())
        self.pg_databases.append(name)
        return name, pg_database_url(name)

    def daphne(
        self,
        database_url: str,
        redis_url: str | None = None,
        *,
        args: tuple[str, ...] = (),
        application: str = "project.asgi:application",
        cpu: str | None = None,
        stop_timeout: float = 10.0,
        **settings: Any,
    ) -> Daphne:
        """Start a daphne serving ``application`` on ``database_url`` (and Redis when given) with
        ``settings`` as variables (pinned to ``cpu`` when given)."""
        env = base_env(database_url, redis_url, **settings)
        return self.start(Daphne(self.workdir, env, args, application, cpu=cpu, stop_timeout=stop_timeout))

    def uvicorn(
        self,
        database_url: str,
        redis_url: str | None = None,
        *,
        args: tuple[str, ...] = (),
        application: str = "project.asgi:application",
        **settings: Any,
    ) -> Uvicorn:
        """As ``daphne``, with uvicorn."""
        return self.start(Uvicorn(self.workdir, base_env(database_url, redis_url, **settings), args, application))

    def another(self, server: S) -> S:
        """One more process like ``server`` (same command and environment: database, Redis,
        settings) on a port of its own."""
        return self.start(server.twin())


@contextlib.contextmanager
def processes(workdir: Path) -> Iterator[Processes]:
    with Processes(workdir) as started:
        yield started
