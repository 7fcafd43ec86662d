"""The production layout in one command (`make prod`): nginx in front of PROCESSES daphne processes.

    DATABASE_URL=postgres://... REDIS_URL=redis://... DJANGO_SECRET_KEY=... make prod

Checks the environment (PostgreSQL, Redis and a secret key are required; DEBUG must be off), runs
``migrate`` and ``collectstatic``, starts PROCESSES daphne processes (``--proxy-headers``), each on
a unix socket ``daphne-<n>.sock`` in the run directory, renders deploy/nginx.conf.template into
that directory and starts Debian's nginx on it in the foreground (``-p <run dir> -e stderr``; nothing
in /etc/nginx is read). It then stays in the foreground, every child's output on its own with the
child's name in front, until Ctrl-C or SIGTERM, which stops nginx and every daphne (SIGKILL after
20 s). SIGHUP (or ``make rolling-restart RUN_DIR=<run dir>``) restarts the daphnes one at a time
while nginx goes on (one that comes during a restart is queued); a daphne that exits by itself is
started again, and only one that keeps exiting, or nginx exiting, stops everything with exit
status 1 (scripts/prod_supervisor.py).
The run directory holds ``prod.pid`` (this script), ``daphne-<n>.pid`` and ``rolling-restart.json``
(scripts/rolling_restart.py, "A supervised run directory").

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
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

from prod_config import ROOT, Config, ConfigError, render
from prod_supervisor import START_TIMEOUT, STOP_TIMEOUT, Child, Daphnes, remove_pid_files, say
from supervised_run_dir import SUPERVISOR_PID


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
    for stale in [*config.run_dir.glob("daphne-*.sock*"), *config.run_dir.glob("daphne-*.pid")]:
        stale.unlink()
    (config.run_dir / "rolling-restart.json").unlink(missing_ok=True)
    return lock


def run(config: Config) -> int:
    """Start the layout and supervise it (scripts/prod_supervisor.py) until SIGINT or SIGTERM (0), or
    until nginx exits or a daphne keeps exiting (1); SIGHUP: a rolling restart of the daphnes."""
    if not shutil.which(config.nginx):
        raise ConfigError(f"no {config.nginx} (NGINX): apt-get install nginx")
    check_listen_free(config.listen)
    lock = prepare_run_dir(config)
    # Django's DEBUG is on unless set: here it is off unless set (from_env refuses it on).
    os.environ.setdefault("DJANGO_DEBUG", "0")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")  # the children's lines as they come, through the pipe
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # One scrape of /metrics counts every process (docs/metrics.md): one directory for all of
        # them, emptied at each start of the whole layout.
        metrics_dir = config.run_dir / "metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(mode=0o700)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
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
    hangup = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    signal.signal(signal.SIGHUP, lambda *_: hangup.set())
    daphnes = Daphnes(config, stopping.is_set)
    nginx: Child | None = None
    status = 0
    pid_file = config.run_dir / SUPERVISOR_PID
    try:
        for name in daphnes.names:
            daphnes.start(name)
        for index, name in enumerate(daphnes.names):
            wait_listening(daphnes.children[name], (socket.AF_UNIX, str(config.socket_path(index))))
        nginx_argv = [config.nginx, "-p", str(config.run_dir), "-c", str(conf), "-e", "stderr"]
        nginx = Child("nginx", nginx_argv)
        wait_listening(nginx, tcp_address(config.listen))
        pid_file.write_text(f"{os.getpid()}\n")
        scheme = "https" if config.tls_cert else "http"
        processes = f"nginx pid {nginx.process.pid}; {daphnes.pids()}; run dir {config.run_dir}"
        say(f"ready: {scheme}://{config.listen}/ ({processes})")
        while not stopping.wait(0.2):
            if nginx.process.poll() is not None:
                say(f"nginx exited with {nginx.process.returncode}: stopping everything")
                nginx.kill_group()  # its workers, if the master was killed: they hold PROD_LISTEN
                status = 1
                break
            if hangup.is_set():
                hangup.clear()  # a SIGHUP during the restart sets it again: one more restart follows
                daphnes.rolling_restart()
                if hangup.is_set():
                    say("a SIGHUP came during the rolling restart: one more rolling restart follows")
            if not daphnes.supervise():
                status = 1
                break
    except ConfigError as error:
        say(f"error: {error}")
        status = 1
    finally:
        say("stopping")
        pid_file.unlink(missing_ok=True)
        if nginx is not None:
            nginx.signal(signal.SIGQUIT)  # stop accepting; open sockets end with their daphne
        daphnes.stop_all()
        daphnes.wait_all()
        if nginx is not None:
            nginx.wait(STOP_TIMEOUT)
        remove_pid_files(config.run_dir)
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
