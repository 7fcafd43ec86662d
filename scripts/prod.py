"""The production layout in one command (`make prod`): nginx in front of PROCESSES daphne processes.

    DATABASE_URL=postgres://... REDIS_URL=redis://... DJANGO_SECRET_KEY=... make prod

Checks the environment (PostgreSQL, Redis and a secret key are required; DEBUG must be off), runs
``migrate`` and ``collectstatic``, starts PROCESSES daphne processes (``--proxy-headers``), each on
a unix socket ``daphne-<n>.sock`` in the run directory, renders deploy/nginx.conf.template into
that directory and starts Debian's nginx on it in the foreground (``-p <run dir> -e <log>``; nothing
in /etc/nginx is read). It then stays in the foreground, every child's output on its own with the
child's name in front, until Ctrl-C or SIGTERM, which stops nginx and every daphne (SIGKILL after
10 s); if any child exits by itself, everything is stopped and the exit status is 1.

``scripts/prod.py render FILE`` only writes the nginx configuration (for the systemd units in
deploy/, docs/deployment.md), with ``--user`` for nginx's workers.

Variables (README, "Settings"): PROCESSES (2), PROD_LISTEN (127.0.0.1:8080), PROD_RUN_DIR (run/ in
the checkout), PROD_CLIENT_TIMEOUT (10 s), PROD_MAX_BODY (1m), PROD_TLS_CERT and PROD_TLS_KEY
(none: plain HTTP), NGINX (nginx), NGINX_WORKERS
(auto), NGINX_WORKER_CONNECTIONS (16384), DAPHNE_ARGS (none). Only the standard library.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "deploy" / "nginx.conf.template"
# Longer than every heartbeat on an open socket: daphne pings every 20 s, the browser client
# sends `ping` every 25 s (static/sessions/client.js).
PROXY_TIMEOUT = 75
START_TIMEOUT = 60.0  # seconds for a daphne or nginx to listen
STOP_TIMEOUT = 10.0  # seconds for a child to exit after its signal, then SIGKILL
_output_lock = threading.Lock()


class ConfigError(Exception):
    """The environment cannot start the layout; the message says what to set."""


@dataclass(frozen=True)
class Config:
    """The layout's settings, from the environment (``from_env``)."""

    processes: int
    listen: str
    run_dir: Path
    client_timeout: int
    max_body: str
    nginx: str
    nginx_workers: str
    worker_connections: int
    daphne_args: tuple[str, ...]
    tls_cert: str = ""
    tls_key: str = ""

    @classmethod
    def from_env(cls, env: dict[str, str], *, service_env: bool = True) -> Config:
        """The settings; raises ConfigError naming every variable that is missing or bad.
        ``service_env``: also require what the daphnes need (DATABASE_URL, REDIS_URL, secret key)."""
        problems = []
        if service_env:
            if not env.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
                problems.append("DATABASE_URL must name the PostgreSQL database (postgres://user@host:5432/name)")
            if not env.get("REDIS_URL", "").startswith(("redis://", "rediss://", "unix://")):
                problems.append("REDIS_URL must name the Redis server (redis://host:6379/0)")
            if not env.get("DJANGO_SECRET_KEY"):
                problems.append("DJANGO_SECRET_KEY must be set (50 random characters, the same for every process)")
            if env.get("DJANGO_DEBUG", "0").lower() not in ("0", "false", "no", "off", "f", "n"):
                problems.append("DJANGO_DEBUG must be 0: with 1, every request nginx forwards is refused (403)")

        def number(name: str, default: int, low: int) -> int:
            raw = env.get(name, str(default))
            if not raw.isdigit() or int(raw) < low:
                problems.append(f"{name}={raw!r} must be a whole number, at least {low}")
                return default
            return int(raw)

        processes = number("PROCESSES", 2, 1)
        client_timeout = number("PROD_CLIENT_TIMEOUT", 10, 1)
        worker_connections = number("NGINX_WORKER_CONNECTIONS", 16384, 16)
        listen = env.get("PROD_LISTEN", "127.0.0.1:8080")
        if not re.fullmatch(r"(\S+:)?\d+", listen):
            problems.append(f"PROD_LISTEN={listen!r} must be host:port or port")
        max_body = env.get("PROD_MAX_BODY", "1m")
        if not re.fullmatch(r"\d+[kKmM]?", max_body):
            problems.append(f"PROD_MAX_BODY={max_body!r} must be a size nginx reads (512k, 1m)")
        tls_cert, tls_key = env.get("PROD_TLS_CERT", ""), env.get("PROD_TLS_KEY", "")
        if bool(tls_cert) != bool(tls_key):
            problems.append("PROD_TLS_CERT and PROD_TLS_KEY go together (the certificate chain and its key, PEM)")
        workers = env.get("NGINX_WORKERS", "auto")
        if not re.fullmatch(r"auto|[1-9]\d*", workers):
            problems.append(f"NGINX_WORKERS={workers!r} must be auto or a number")
        if problems:
            raise ConfigError("; ".join(problems))
        return cls(
            processes=processes,
            listen=listen,
            run_dir=Path(env.get("PROD_RUN_DIR") or ROOT / "run").absolute(),
            client_timeout=client_timeout,
            max_body=max_body,
            nginx=env.get("NGINX") or shutil.which("nginx") or "/usr/sbin/nginx",
            nginx_workers=workers,
            worker_connections=worker_connections,
            daphne_args=tuple(shlex.split(env.get("DAPHNE_ARGS", ""))),
            tls_cert=tls_cert and str(Path(tls_cert).absolute()),
            tls_key=tls_key and str(Path(tls_key).absolute()),
        )

    def socket_path(self, index: int) -> Path:
        return self.run_dir / f"daphne-{index}.sock"


def render(config: Config, static_root: Path, user: str | None, max_files: int | None = None) -> str:
    """deploy/nginx.conf.template with this layout's values; ``user``: nginx's workers' account
    (for a master started as root; None: no ``user`` line, the workers run as the master);
    ``max_files``: the most file descriptors nginx may ask for (this process's hard limit)."""
    servers = "\n".join(f"        server unix:{config.socket_path(i)};" for i in range(config.processes))
    tls = "        # TLS: PROD_TLS_CERT and PROD_TLS_KEY unset, plain HTTP (a load balancer terminates it)"
    if config.tls_cert:
        tls = "\n".join(
            f"        {line}"
            for line in (
                f"ssl_certificate {config.tls_cert};",
                f"ssl_certificate_key {config.tls_key};",
                "ssl_protocols TLSv1.2 TLSv1.3;",
                "ssl_session_cache shared:tls:10m;",
                "ssl_session_timeout 1d;",
            )
        )
    values = {
        "tls": tls,
        "user": f"user {user};" if user else "# user: the account that started nginx",
        "workers": config.nginx_workers,
        "run_dir": str(config.run_dir),
        "nofile": str(min(config.worker_connections * 2, max_files or sys.maxsize)),
        "worker_connections": str(config.worker_connections),
        "header_timeout": str(config.client_timeout),
        "body_timeout": str(config.client_timeout),
        "max_body": config.max_body,
        "upstream_servers": servers,
        "listen": config.listen + (" ssl" if config.tls_cert else ""),
        "static_root": str(static_root),
        "proxy_timeout": str(PROXY_TIMEOUT),
    }
    text = TEMPLATE.read_text()
    missing = set(re.findall(r"{{(\w+)}}", text)) - set(values)
    assert not missing, f"no value for {missing}"
    return re.sub(r"{{(\w+)}}", lambda match: values[match[1]], text)


def manage(*args: str) -> str:
    """Run ``manage.py`` with this interpreter; its stdout. Exits with its output if it fails."""
    result = subprocess.run(  # noqa: S603 - our own interpreter and manage.py
        [sys.executable, "manage.py", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        sys.exit(f"prod: manage.py {args[0]} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def static_root() -> Path:
    return Path(manage("shell", "-c", "from django.conf import settings; print(settings.STATIC_ROOT)").split()[-1])


def say(line: str) -> None:
    with _output_lock:
        sys.stdout.write(f"prod | {line}\n")
        sys.stdout.flush()


def _copy_output(name: str, stream: IO[bytes]) -> None:
    """Copy a child's output to ours, each line with the child's name in front."""
    for line in iter(stream.readline, b""):
        with _output_lock:
            sys.stdout.buffer.write(f"{name} | ".encode() + line)
            sys.stdout.flush()


class Child:
    """A child process in a session of its own (a terminal's Ctrl-C reaches only this script,
    which stops the children in order), its output copied to ours."""

    def __init__(self, name: str, argv: list[str]) -> None:
        self.name = name
        self.process = subprocess.Popen(  # noqa: S603 - our own commands
            argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        assert self.process.stdout is not None
        threading.Thread(target=_copy_output, args=(name, self.process.stdout), daemon=True).start()

    def signal(self, sig: int) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)

    def wait(self, timeout: float) -> None:
        """Wait for the exit; SIGKILL (and wait) after ``timeout`` seconds."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            say(f"{self.name} did not stop in {timeout:g} s: SIGKILL")
            self.process.kill()
            self.process.wait()


def wait_listening(child: Child, address: tuple[int, str | tuple[str, int]]) -> None:
    """Wait until ``address`` (family, path or (host, port)) accepts a connection; ConfigError if
    the child exits first or after START_TIMEOUT seconds."""
    family, where = address
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if child.process.poll() is not None:
            raise ConfigError(f"{child.name} exited with {child.process.returncode} (its output is above)")
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.settimeout(0.5)
            try:
                probe.connect(where)
                return
            except OSError:
                pass
        if time.monotonic() > deadline:
            raise ConfigError(f"{child.name} did not listen on {where} in {START_TIMEOUT:g} s")
        time.sleep(0.1)


def tcp_address(listen: str) -> tuple[int, tuple[str, int]]:
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if host in ("*", "0.0.0.0"):  # noqa: S104 - the address nginx listens on, probed locally
        host = "127.0.0.1"
    return (socket.AF_INET6 if ":" in host else socket.AF_INET), (host, int(port))


def check_listen_free(listen: str) -> None:
    """ConfigError when nginx could not listen on ``listen`` (in use, or a port below 1024 for an
    account that may not bind it): said before anything starts."""
    family, address = tcp_address(listen)
    host = listen.rpartition(":")[0].strip("[]")
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host if host not in ("", "*") else "", address[1]))
        except OSError as error:
            raise ConfigError(f"nginx cannot listen on PROD_LISTEN={listen}: {error.strerror}") from None


def prepare_run_dir(config: Config) -> IO[str]:
    """Create the run directory (mode 700: only this account may connect to the daphnes, which
    trust X-Forwarded-For) and lock it; removes the sockets a previous run left."""
    config.run_dir.mkdir(parents=True, exist_ok=True)
    config.run_dir.chmod(0o700)
    lock = open(config.run_dir / "prod.lock", "w")  # held until exit
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ConfigError(f"another scripts/prod.py runs in {config.run_dir} (PROD_RUN_DIR)") from None
    for stale in config.run_dir.glob("daphne-*.sock*"):
        stale.unlink()
    return lock


def daphne_argv(config: Config, index: int) -> list[str]:
    # mode=660: the socket's group (nginx's, under systemd) may connect; backlog: a burst of
    # reconnects after a restart waits in the queue instead of being refused (nginx: 502).
    endpoint = f"unix:{config.socket_path(index)}:mode=660:backlog=1024"
    return [sys.executable, "-m", "daphne", "-e", endpoint, "--proxy-headers", *config.daphne_args,
            "project.asgi:application"]  # fmt: skip


def run(config: Config) -> int:
    """Start the layout and supervise it until a signal (0) or a child's exit (1)."""
    if not shutil.which(config.nginx):
        raise ConfigError(f"no {config.nginx} (NGINX): apt-get install nginx")
    check_listen_free(config.listen)
    lock = prepare_run_dir(config)
    # Django's DEBUG is on unless set: here it is off unless set (from_env refuses it on).
    os.environ.setdefault("DJANGO_DEBUG", "0")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")  # the children's lines as they come, through the pipe
    # Every socket is a file descriptor: the children get the hard limit.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    say("migrate")
    manage("migrate", "--noinput")
    say("collectstatic")
    manage("collectstatic", "--noinput")
    root = static_root()
    conf = config.run_dir / "nginx.conf"
    # Started as root, nginx's workers would be nobody, who cannot open the sockets here: they
    # run as root too (a container); as any other account, they run as it.
    limit = None if hard == resource.RLIM_INFINITY else hard
    conf.write_text(render(config, root, "root" if os.geteuid() == 0 else None, limit))

    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    daphnes: list[Child] = []
    nginx: Child | None = None
    status = 0
    try:
        daphnes = [Child(f"daphne-{i}", daphne_argv(config, i)) for i in range(config.processes)]
        for index, child in enumerate(daphnes):
            wait_listening(child, (socket.AF_UNIX, str(config.socket_path(index))))
        nginx_argv = [config.nginx, "-p", str(config.run_dir), "-c", str(conf), "-e", "stderr"]
        nginx = Child("nginx", nginx_argv)
        wait_listening(nginx, tcp_address(config.listen))
        pids = ", ".join(f"{child.name} pid {child.process.pid}" for child in daphnes)
        scheme = "https" if config.tls_cert else "http"
        say(f"ready: {scheme}://{config.listen}/ (nginx pid {nginx.process.pid}; {pids}; run dir {config.run_dir})")
        while not stopping.wait(0.2):
            exited = [child for child in [nginx, *daphnes] if child.process.poll() is not None]
            if exited:
                say(f"{exited[0].name} exited with {exited[0].process.returncode}: stopping everything")
                status = 1
                break
    except ConfigError as error:
        say(f"error: {error}")
        status = 1
    finally:
        say("stopping")
        if nginx is not None:
            nginx.signal(signal.SIGQUIT)  # stop accepting; open sockets end with their daphne
        for child in daphnes:
            child.signal(signal.SIGTERM)
        for child in [*daphnes, *([nginx] if nginx else [])]:
            child.wait(STOP_TIMEOUT + (5 if child is nginx else 0))
        say("stopped")
        lock.close()
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command")
    render_parser = sub.add_parser("render", help="only write the nginx configuration to FILE")
    render_parser.add_argument("file", type=Path)
    render_parser.add_argument("--user", help="nginx's workers' account (user [group]), e.g. www-data")
    render_parser.add_argument("--static-root", type=Path, help="default: the project's STATIC_ROOT")
    args = parser.parse_args(argv)
    try:
        if args.command == "render":
            config = Config.from_env(dict(os.environ), service_env=False)
            args.file.write_text(render(config, args.static_root or static_root(), args.user))
            return 0
        return run(Config.from_env(dict(os.environ)))
    except ConfigError as error:
        print(f"prod: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
