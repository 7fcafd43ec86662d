"""Issue 13, item 1: the production layout (scripts/prod.py, `make prod`) through its nginx.

The layout is started once for the module, as an operator would: the script, with DATABASE_URL
(a PostgreSQL database ``interactive_prod_<random>``, migrated with the test users, dropped
afterwards) and REDIS_URL (a private ``redis-server`` on a free port, tests/live.py), PROCESSES=2,
PROD_CLIENT_TIMEOUT=2 and one nginx worker. Every request goes to nginx's port; the daphnes listen
on unix sockets only. Marked ``prod``: scripts/test.sh runs it in a step of its own, which needs
nginx (Debian's package), PostgreSQL and Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests import live, wsclient
from tests.adminhttp import Admin

pytestmark = pytest.mark.prod

ROOT = Path(__file__).resolve().parents[1]
FORGED = "203.0.113.77"  # TEST-NET-3: an address a client claims in its own X-Forwarded-For
HEADER_TIMEOUT = 2  # PROD_CLIENT_TIMEOUT for this layout, seconds


@dataclass
class Layout:
    """The running layout: nginx's URLs, the script's output, the database."""

    port: int
    database_url: str
    run_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url, autocommit=True, connect_timeout=5) as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def token(self, username: str) -> str:
        status, body = live.http_json(self.http + "/api/v1/token/", {"username": username, "password": live.PASSWORD})
        assert status == 200, (status, body)
        return body["access"]


def child_pids(ready_line: str) -> list[int]:
    return [int(pid) for pid in re.findall(r"pid (\d+)", ready_line)]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()


@contextlib.contextmanager
def running_layout(workdir: Path, **settings: Any) -> Iterator[Layout]:
    """``scripts/prod.py`` on a fresh database and a private Redis, with ``settings`` as variables,
    until the block ends; then SIGTERM, and every process it started must be gone."""
    with live.processes(workdir) as started:
        redis = started.redis()
        _, database_url = started.postgres(prefix="interactive_prod")
        port = live.free_port()
        env = live.base_env(
            database_url,
            redis.url,
            **{"PROCESSES": 2, "PROD_LISTEN": f"127.0.0.1:{port}", "PROD_RUN_DIR": workdir / "run", **settings},
        )
        log_path = workdir / "prod.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "scripts/prod.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        running = Layout(port, database_url, workdir / "run", log_path, process)
        try:
            live.wait_until(
                lambda: "prod | ready:" in running.log() or process.poll() is not None, 180, "the layout to start"
            )
            assert process.poll() is None, running.log()
            ready = next(line for line in running.log().splitlines() if line.startswith("prod | ready:"))
            yield running
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                status = process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                raise
    # Outside the finally: a start-up failure above is reported as itself.
    assert status == 0, running.log()[-4000:]
    assert running.log().rstrip().endswith("prod | stopped")
    assert [pid for pid in child_pids(ready) if alive(pid)] == []


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Layout]:
    """The layout of most tests here: two processes, one nginx worker, PROD_CLIENT_TIMEOUT=2."""
    with running_layout(
        tmp_path_factory.mktemp("prod"), PROD_CLIENT_TIMEOUT=HEADER_TIMEOUT, NGINX_WORKERS=1
    ) as running:
        yield running


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - the local layout
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def daphne_access_lines(layout: Layout) -> list[str]:
    """daphne's access log lines (on its stdout, copied by the script as ``daphne-<n> | ...``)."""
    return [line for line in layout.log().splitlines() if re.match(r"daphne-\d+ \| \S+ - - \[", line)]


# --- HTTP ------------------------------------------------------------------------------------------


def test_the_page_static_files_and_health_check_load_through_nginx(layout: Layout) -> None:
    status, headers, body = get(layout.http + "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html"), (status, body[:300])
    assert b"/static/sessions/" in body

    status, headers, body = get(layout.http + "/static/sessions/client.js")
    assert status == 200 and headers["Content-Type"] == "text/javascript"
    assert body == (ROOT / "static" / "sessions" / "client.js").read_bytes()
    # nginx served it from STATIC_ROOT: no daphne saw the request.
    assert not [line for line in daphne_access_lines(layout) if "/static/" in line]

    status, _, body = get(layout.http + "/healthz")
    assert status == 200 and b'"status": "ok"' in body
    live.wait_until(
        lambda: [line for line in daphne_access_lines(layout) if '"GET /healthz" 200' in line], 10, "the access line"
    )


def test_an_oversize_request_body_is_refused_413_and_a_sign_in_works(layout: Layout) -> None:
    body = b'{"username": "alice", "password": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    request = urllib.request.Request(  # noqa: S310 - the local layout
        layout.http + "/api/v1/token/", data=body, headers={"Content-Type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)  # noqa: S310
    assert refused.value.code == 413
    assert layout.token("alice")


def test_a_slow_header_client_is_cut_by_nginx(layout: Layout) -> None:
    """A client that sends one header line every 0.5 s would hold its connection for the 30 s of
    its 60 lines; nginx drops it once client_header_timeout (2 s here) has passed."""
    with socket.create_connection(("127.0.0.1", layout.port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        sock.settimeout(0.5)
        cut = False
        for line in range(60):
            try:
                sock.sendall(b"X-Slow-%d: y\r\n" % line)
                if sock.recv(1024) == b"":
                    cut = True
                    break
            except TimeoutError:
                continue
            except OSError:  # reset (reset_timedout_connection) or broken pipe
                cut = True
                break
        assert cut, "nginx never closed a connection whose header did not end"
        assert line < 59


# --- the client's address ------------------------------------------------------------------------------


def test_the_client_address_is_the_real_client_not_a_forged_header(layout: Layout) -> None:
    """daphne (--proxy-headers) takes X-Forwarded-For from nginx, which sets it to the address it
    saw: a client's own header is replaced. The sign-in throttle records that address."""
    request = urllib.request.Request(  # noqa: S310 - the local layout
        layout.http + "/api/v1/token/",
        data=b'{"username": "erin", "password": "wrong"}',
        headers={"Content-Type": "application/json", "X-Forwarded-For": FORGED, "X-Real-IP": FORGED},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)  # noqa: S310
    assert refused.value.code == 401
    assert layout.query("SELECT host(ip_address) FROM axes_accessattempt WHERE username = 'erin'") == [("127.0.0.1",)]

    async def connect_forged() -> int:
        token = layout.token("dave")
        async with connect(
            layout.ws + live.SOCKET_PATH, additional_headers={"X-Forwarded-For": FORGED}, ping_interval=None
        ) as ws:
            client = wsclient.Client(ws)
            await client.send({"token": token})
            assert (await client.recv())["state"] == "initialised"
            return ws.transport.get_extra_info("sockname")[1]

    local_port = asyncio.run(connect_forged())
    # daphne's access line carries scope["client"]: this client's own address and port.
    expected = re.compile(rf'daphne-\d+ \| 127\.0\.0\.1:{local_port} - - \[[^]]+\] "WSCONNECT {live.SOCKET_PATH}"')
    live.wait_until(lambda: any(expected.match(line) for line in daphne_access_lines(layout)), 10, "WSCONNECT line")
    assert FORGED not in "\n".join(daphne_access_lines(layout))


# --- WebSockets -------------------------------------------------------------------------------------------


async def test_the_origin_check_works_behind_the_proxy(layout: Layout) -> None:
    own = f"http://127.0.0.1:{layout.port}"
    async with connect(layout.ws + live.SOCKET_PATH, origin=own, ping_interval=None) as ws:
        client = wsclient.Client(ws)
        await client.send({"token": layout.token("carol")})
        assert (await client.recv())["state"] == "initialised"
    with pytest.raises(InvalidStatus) as refused:
        async with connect(layout.ws + live.SOCKET_PATH, origin="http://evil.example", ping_interval=None):
            pass
    assert refused.value.response.status_code == 403


async def test_clients_on_different_daphne_processes_get_each_others_pushes(layout: Layout) -> None:
    async with wsclient.clients() as opened:
        alice = await wsclient.login(layout.ws, layout.token("alice"))
        opened.append(alice)
        bob = await wsclient.login(layout.ws, layout.token("bob"))
        opened.append(bob)

        def servers() -> dict[str, str]:
            rows = layout.query(
                "SELECT u.username, c.server_id FROM sessions_app_connection c JOIN auth_user u ON u.id = c.user_id"
                " WHERE u.username IN ('alice', 'bob')"
            )
            return dict(rows)

        where = await asyncio.to_thread(live.wait_until, lambda: len(servers()) == 2 and servers(), 10, "the rows")
        # least_conn: the second socket goes to the process without one.
        assert where["alice"] != where["bob"], where

        session = await alice.ok("create", {"title": "Behind nginx", "data": {"items": []}})
        await alice.ok("invite", {"username": "bob", "role": "editor"})
        await bob.ok("join", {"session": session["id"]})
        assert (await alice.push("presence"))["data"]["joined"] == bob.user
        ops = [{"op": "add", "path": "/items/-", "value": "one"}]
        assert await alice.ok("patch", {"version": 0, "ops": ops}) == {"version": 1}
        assert (await bob.push("patched"))["data"]["ops"] == ops
        ops = [{"op": "add", "path": "/items/-", "value": "two"}]
        assert await bob.ok("patch", {"version": 1, "ops": ops}) == {"version": 2}
        assert (await alice.push("patched"))["data"]["by"] == bob.user


# --- the configuration ------------------------------------------------------------------------------


def test_the_daphnes_are_reachable_only_through_the_run_directory(layout: Layout) -> None:
    assert layout.run_dir.stat().st_mode & 0o777 == 0o700
    sockets = sorted(path.name for path in layout.run_dir.glob("daphne-*.sock"))
    assert sockets == ["daphne-0.sock", "daphne-1.sock"]
    config = (layout.run_dir / "nginx.conf").read_text()
    assert "{{" not in config and f"client_header_timeout {HEADER_TIMEOUT}s;" in config
    checked = subprocess.run(  # noqa: S603 - nginx's own syntax check of the rendered file
        [
            shutil.which("nginx") or "nginx",
            "-t",
            "-p",
            str(layout.run_dir),
            "-c",
            str(layout.run_dir / "nginx.conf"),
            "-e",
            "stderr",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr


# --- TLS at nginx -------------------------------------------------------------------------------------------


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and its key), valid for a day, made with openssl."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(  # noqa: S603
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",  # noqa: S607
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def test_tls_at_nginx_with_the_production_settings(tmp_path: Path) -> None:
    """PROD_TLS_CERT/PROD_TLS_KEY: nginx terminates TLS and says so in X-Forwarded-Proto, which
    Django trusts with DJANGO_PROXY_SSL_HEADER=1: DJANGO_HTTPS=1 then serves (HSTS, no redirect
    loop), and a wss:// client signs in."""
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(cafile=str(cert))
    settings = {"PROD_TLS_CERT": cert, "PROD_TLS_KEY": key, "DJANGO_HTTPS": 1, "DJANGO_PROXY_SSL_HEADER": 1}
    with running_layout(tmp_path, PROCESSES=1, NGINX_WORKERS=1, **settings) as running:
        base = f"https://127.0.0.1:{running.port}"
        with urllib.request.urlopen(base + "/", timeout=10, context=context) as response:  # noqa: S310
            assert response.status == 200 and response.url == base + "/"
            assert response.headers["Strict-Transport-Security"] == "max-age=31536000"
        request = urllib.request.Request(  # noqa: S310
            base + "/api/v1/token/",
            data=json.dumps({"username": "alice", "password": live.PASSWORD}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10, context=context) as response:  # noqa: S310
            token = json.loads(response.read())["access"]

        async def sign_in() -> dict[str, Any]:
            async with connect(
                f"wss://127.0.0.1:{running.port}{live.SOCKET_PATH}", ssl=context, origin=base, ping_interval=None
            ) as ws:
                client = wsclient.Client(ws)
                await client.send({"token": token})
                return await client.recv()

        assert asyncio.run(sign_in())["state"] == "initialised"
        # The admin's CSRF check (Referer against the Host nginx passes, over https) holds behind
        # the proxy: no CSRF_TRUSTED_ORIGINS needed.
        running.query("UPDATE auth_user SET is_staff = true, is_superuser = true WHERE username = 'alice'")
        admin = Admin(base, "alice", live.PASSWORD, context=context)
        assert any(cookie.name == "sessionid" and cookie.secure for cookie in admin.cookies)
        # Plain HTTP to the TLS port is refused by nginx itself.
        status, _, _ = get(f"http://127.0.0.1:{running.port}/healthz")
        assert status == 400
