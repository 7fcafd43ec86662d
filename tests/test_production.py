"""Issue 13, item 1: the production layout (scripts/prod.py, `make prod`) through its nginx.

The layout (tests/prodlayout.py) is started once for the module, as an operator would: the script, with DATABASE_URL
(a PostgreSQL database ``interactive_prod_<random>``, migrated with the test users, dropped
afterwards) and REDIS_URL (a private ``redis-server`` on a free port, tests/live.py), PROCESSES=2,
PROD_CLIENT_TIMEOUT=2 and one nginx worker. Every request goes to nginx's port; the daphnes listen
on unix sockets only. Marked ``prod``: scripts/test.sh runs it in a step of its own, which needs
nginx (Debian's package), PostgreSQL and Redis.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests import live, rolling, wsclient
from tests.prodlayout import Layout, alive, copy_checkout, daphne_access_lines, get, nginx_workers, running_layout
from tests.scrape import labels_of, scrape, total, value

pytestmark = pytest.mark.prod

ROOT = Path(__file__).resolve().parents[1]
FORGED = "203.0.113.77"  # TEST-NET-3: an address a client claims in its own X-Forwarded-For
HEADER_TIMEOUT = 2  # PROD_CLIENT_TIMEOUT for this layout, seconds


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Layout]:
    """The layout of most tests here: two processes, one nginx worker, PROD_CLIENT_TIMEOUT=2."""
    with running_layout(
        tmp_path_factory.mktemp("prod"), PROD_CLIENT_TIMEOUT=HEADER_TIMEOUT, NGINX_WORKERS=1
    ) as running:
        yield running


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


def server_of(layout: Layout, username: str) -> str:
    """The daphne process (ServerProcess id: host-pid-random) holding the user's one socket."""
    rows = live.wait_until(
        lambda: layout.query(
            "SELECT c.server_id FROM sessions_app_connection c JOIN auth_user u ON u.id = c.user_id"
            " WHERE u.username = %s",
            (username,),
        ),
        10,
        f"{username}'s connection row",
    )
    assert len(rows) == 1, rows
    return rows[0][0]


async def test_clients_on_different_daphne_processes_get_each_others_pushes(layout: Layout) -> None:
    async with wsclient.clients() as opened:
        alice = await wsclient.login(layout.ws, layout.token("alice"))
        opened.append(alice)
        home = await asyncio.to_thread(server_of, layout, "alice")
        # least_conn sends the next socket to the process without one; a socket of an earlier test
        # that nginx has not counted out yet could tie them, so one more user may be needed (users
        # whose sockets no earlier test opened: no stale row).
        for name in ("bob", "erin"):
            other = await wsclient.login(layout.ws, layout.token(name))
            opened.append(other)
            if await asyncio.to_thread(server_of, layout, name) != home:
                break
        else:
            raise AssertionError("every socket went to alice's process")

        session = await alice.ok("create", {"title": "Behind nginx", "data": {"items": []}})
        await alice.ok("invite", {"username": name, "role": "editor"})
        await other.ok("join", {"session": session["id"]})
        assert (await alice.push("presence"))["data"]["joined"] == other.user
        ops = [{"op": "add", "path": "/items/-", "value": "one"}]
        assert await alice.ok("patch", {"version": 0, "ops": ops}) == {"version": 1}
        assert (await other.push("patched"))["data"]["ops"] == ops
        ops = [{"op": "add", "path": "/items/-", "value": "two"}]
        assert await other.ok("patch", {"version": 1, "ops": ops}) == {"version": 2}
        assert (await alice.push("patched"))["data"]["by"] == other.user

        # /metrics through nginx (issue 13 item 3): whichever process answers, it counts both
        # (scripts/prod.py gives them one PROMETHEUS_MULTIPROC_DIR), and the figures moved.
        def counted() -> bool:
            samples = scrape(layout.http)
            return (
                total(samples, "sessions_connections_open") >= 2
                and value(samples, "sessions_frames_total", state="patch") >= 2
                and total(samples, "sessions_pushes_sent_total") >= 2
                and len(labels_of(samples, "sessions_process_heartbeat_timestamp_seconds", "pid")) == 2
            )

        await asyncio.to_thread(live.wait_until, counted, 30, "both processes' figures in one scrape", 0.5)


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


# --- restarts (scripts/prod_supervisor.py) --------------------------------------------------------


@pytest.fixture(scope="module")
def restarted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Layout]:
    """A layout of its own for the restarts: two nginx workers (one upstream state in their shared
    zone), the writers' settings (tests/rolling.py)."""
    with running_layout(tmp_path_factory.mktemp("restart"), NGINX_WORKERS=2, **rolling.SETTINGS) as running:
        yield running


@pytest.mark.slow
async def test_a_rolling_restart_behind_nginx_under_40_writers_loses_and_duplicates_nothing(restarted: Layout) -> None:
    """`make rolling-restart RUN_DIR=<run dir>` (rolling_restart.py, which asks the script with
    SIGHUP) restarts both daphnes one at a time while tests/rolling.py's 40 writers patch through
    nginx; nginx is the same process throughout, and the clients find the other daphne through it."""
    before = restarted.pids()
    sessions, writers = await rolling.prepare(restarted.http, restarted.ws, [restarted.ws])

    async def restart() -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "scripts/rolling_restart.py", "restart", "--run-dir", str(restarted.run_dir),
            cwd=ROOT, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, stderr = await asyncio.wait_for(process.communicate(), 300)
        assert process.returncode == 0, stderr.decode() + restarted.log()[-3000:]

    await rolling.write_through(writers, restart)
    print(rolling.check_writers(writers))
    print(next(line for line in restarted.log().splitlines() if "rolling restart 1 done" in line))
    await asyncio.to_thread(rolling.check_stored, restarted.query, sessions, writers)

    after = restarted.pids()
    assert after["nginx"] == before["nginx"] and alive(after["nginx"])
    daphnes = [name for name in before if name.startswith("daphne-")]
    assert daphnes == ["daphne-0", "daphne-1"]
    for name in daphnes:
        assert after[name] != before[name] and alive(after[name]) and not alive(before[name]), (before, after)
    # nginx never found both down (max_fails=0: no process is ever marked down).
    assert not re.search(r"exited by itself|stopping everything|no live upstreams", restarted.log())


def test_a_daphne_that_dies_is_started_again_and_nginx_serves_meanwhile(restarted: Layout) -> None:
    """SIGKILL (no drain, its socket file left behind): the script starts it again on the same
    socket; nginx passes the requests to the other daphne meanwhile; the layout stays up."""
    victim = restarted.pids()["daphne-1"]
    os.kill(victim, signal.SIGKILL)
    while "daphne-1 started again" not in restarted.log():
        status, _, _ = get(restarted.http + "/healthz")
        assert status == 200
        assert restarted.process.poll() is None, restarted.log()[-3000:]
    assert re.search(rf"daphne-1 \(pid {victim}\) exited by itself with -9 .*unexpected exit 1 in", restarted.log())
    live.wait_until(lambda: restarted.pids()["daphne-1"] != victim, 10, "the new pid file")

    def answers_on_its_socket() -> bool:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            try:
                sock.connect(str(restarted.run_dir / "daphne-1.sock"))
                sock.sendall(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
                return sock.recv(64).split(b"\r\n")[0].endswith(b" 200 OK")
            except OSError:
                return False

    live.wait_until(answers_on_its_socket, 60, "the new daphne-1 to answer /healthz on its socket", 0.2)


@pytest.mark.slow
def test_a_rolling_restart_asked_for_during_one_follows_it(restarted: Layout) -> None:
    """A deploy that updates the checkout twice: the second `make rolling-restart` comes while the
    first restart runs; it is queued (not dropped), and waits for the restart that follows."""
    status_path = restarted.run_dir / "rolling-restart.json"
    before = json.loads(status_path.read_text())["number"] if status_path.exists() else 0
    os.kill(restarted.process.pid, signal.SIGHUP)
    live.wait_until(
        lambda: status_path.exists() and json.loads(status_path.read_text())["number"] == before + 1, 30, "the restart"
    )
    result = restart_through_the_script(restarted.run_dir)
    assert result.returncode == 0, result.stderr + restarted.log()[-3000:]
    assert "a rolling restart is under way" in result.stderr and "rolling restart done" in result.stderr
    assert "a SIGHUP came during the rolling restart: one more rolling restart follows" in restarted.log()
    outcome = json.loads(status_path.read_text())
    assert outcome["number"] == before + 2 and outcome["state"] == "done", outcome


# --- failures of the layout itself -------------------------------------------------------------------


def socket_health(path: Path) -> int:
    """The status of GET /healthz on a daphne's own socket (0: no connection)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        try:
            sock.connect(str(path))
            sock.sendall(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
            return int(sock.recv(64).split(b" ")[1])
        except (OSError, IndexError, ValueError):
            return 0


def restart_through_the_script(run_dir: Path) -> subprocess.CompletedProcess[str]:
    """`make rolling-restart RUN_DIR=<run dir>`: scripts/rolling_restart.py restart."""
    return subprocess.run(  # noqa: S603 - the script under test
        [sys.executable, "scripts/rolling_restart.py", "restart", "--run-dir", str(run_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=400, check=False,
    )  # fmt: skip


@pytest.mark.slow
def test_a_replacement_that_does_not_become_healthy_is_stopped_and_nginx_uses_the_other(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A deploy of bad code (the health view raises, as in the operator's trial): the rolling
    restart stops at daphne-0's replacement, which answers 500 at once and so would get every
    request least_conn gives it. It is stopped, its socket file removed, its slot left empty (not
    started again); every request through nginx goes to daphne-1. The next rolling restart, of
    fixed code, fills the slot again."""
    checkout = copy_checkout(tmp_path_factory.mktemp("checkout"))
    health = checkout / "sessions_app" / "health.py"
    good = health.read_text()
    with running_layout(tmp_path_factory.mktemp("unhealthy"), checkout=checkout) as layout:
        before = layout.pids()
        # Each process loads its URLconf (and the health view) at its first request: before the edit.
        for index in (0, 1):
            assert socket_health(layout.run_dir / f"daphne-{index}.sock") == 200
        health.write_text(good + '\nraise RuntimeError("a deploy of bad code")\n')
        result = restart_through_the_script(layout.run_dir)
        assert result.returncode == 1, result.stderr
        # Each step, and the outcome saying how many serve, in the script's own output.
        assert "daphne-0: stopping (it drains)" in result.stderr
        assert "daphne-0: stopped in" in result.stderr and "did not become healthy" in result.stderr
        assert "1 of 2 processes serve (daphne-1)" in result.stderr, result.stderr
        log = layout.log()
        assert "WARNING: daphne-0 stopped, its slot empty until the next rolling restart" in log
        replacement = int(re.findall(r"daphne-0: stopped in [\d.]+ s; waiting for pid (\d+)", log)[-1])
        assert replacement != before["daphne-0"] and not alive(replacement)
        assert not (layout.run_dir / "daphne-0.sock").exists()
        assert alive(before["daphne-1"]) and alive(before["nginx"])

        for _ in range(12):
            status, _, body = get(layout.http + "/healthz")
            assert status == 200, (status, body[:300])
            assert layout.token("alice")
        # Past the crash policy's delay (1 s): the empty slot is not started again.
        assert "daphne-0 started again" not in layout.log()
        assert layout.process.poll() is None

        health.write_text(good)
        result = restart_through_the_script(layout.run_dir)
        assert result.returncode == 0, result.stderr + layout.log()[-3000:]
        after = layout.pids()
        assert alive(after["daphne-0"]) and after["daphne-1"] != before["daphne-1"]
        assert sorted(path.name for path in layout.run_dir.glob("daphne-*.sock")) == ["daphne-0.sock", "daphne-1.sock"]


def test_nginx_killed_takes_its_workers_with_it_and_the_port_is_free_again(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """kill -9 of nginx's master leaves its workers listening (re-parented to PID 1); the script,
    which then stops everything (status 1), kills its process group: the port is free again."""
    with running_layout(tmp_path_factory.mktemp("nginxkilled"), expect=1, NGINX_WORKERS=2) as layout:
        master = layout.pids()["nginx"]
        workers = nginx_workers(master)
        assert len(workers) == 2
        os.kill(master, signal.SIGKILL)
        layout.process.wait(120)
        assert "nginx exited with -9: stopping everything" in layout.log()
        assert [pid for pid in workers if alive(pid)] == []
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", layout.port))


def test_the_children_die_with_a_killed_supervisor(tmp_path_factory: pytest.TempPathFactory) -> None:
    """kill -9 of the script: Linux sends each child SIGTERM (PR_SET_PDEATHSIG): the daphnes drain
    and exit, nginx's master stops its workers; nothing serves on unsupervised."""
    with running_layout(tmp_path_factory.mktemp("supervisorkilled"), expect=-9) as layout:
        pids = layout.pids()
        workers = nginx_workers(pids["nginx"])
        os.kill(layout.process.pid, signal.SIGKILL)
        layout.process.wait(30)
        everything = [*pids.values(), *workers]
        live.wait_until(lambda: not [pid for pid in everything if alive(pid)], 60, "every child to exit", 0.2)
