"""Issue 13, item 5: logs for operators (sessions_app/oplog.py), read from a live daphne's output.

One line per connection outcome (normal close, auth timeout, bad token) with the connection id,
user id, close code and reason; ``LOG_FORMAT=json`` gives one JSON object per line; a request with
a bad Host is one WARNING line without a traceback; and a Redis outage while a client patches is
one warning (with its traceback) and one recovery line with the count, not a line per publish.
"""

import asyncio
import contextlib
import json
import logging
import re
import signal
import socket
import threading
import urllib.error
import urllib.request
from urllib.parse import urlsplit, urlunsplit

import pytest
from rest_framework.test import APIClient

from sessions_app import oplog
from tests import live, wsclient


def bad_host_request(server):
    """A GET with a Host that is not in ALLOWED_HOSTS; returns the HTTP status."""
    request = urllib.request.Request(server.http + "/healthz", headers={"Host": "scanner.example"})  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def outcomes(records):
    return {record["reason"]: record for record in records if record.get("message", "").startswith("connection ended")}


@pytest.mark.slow
async def test_json_lines_with_connection_outcomes_and_a_one_line_disallowed_host(started):
    # -v 0: daphne's own access log is not written through logging (README, LOG_FORMAT).
    server = started.daphne(
        started.sqlite(), args=("-v", "0"), LOG_FORMAT="json", LOG_LEVEL="DEBUG", SESSIONS_AUTH_TIMEOUT=1
    )
    token = server.token("alice")
    async with wsclient.clients() as opened:
        alice = await wsclient.login(server.ws, token)
        opened.append(alice)
        await alice.ok("ping")
        await alice.close()  # a normal close: 1000 from the client

        silent = await wsclient.open_client(server.ws)  # never sends its token
        opened.append(silent)
        assert (await silent.recv())["code"] == "auth_timeout"
        assert await silent.closed() == 4408

        forger = await wsclient.open_client(server.ws)
        opened.append(forger)
        await forger.send({"token": token + "x"})
        assert (await forger.recv())["code"] == "not_authenticated"
        assert await forger.closed() == 4401
    assert bad_host_request(server) == 400
    live.wait_until(lambda: server.log().count("connection ended") >= 3, 10, "three outcome lines")
    server.stop()

    lines = [line for line in server.log().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"timestamp", "level", "logger", "message"} <= record.keys() for record in records), records
    ended = outcomes(records)
    assert set(ended) == {"client closed", "auth_timeout", "not_authenticated"}, ended
    normal = ended["client closed"]
    assert normal["close_code"] == 1000
    assert normal["user_id"] == alice.user["id"]
    assert normal["frames_in"] == 2 and normal["frames_out"] == 2  # token + ping; initialised + reply
    assert len({record["connection"] for record in ended.values()} - {"-"}) == 3  # each its channel name
    assert ended["auth_timeout"]["close_code"] == 4408 and ended["auth_timeout"]["user_id"] == "-"
    assert ended["not_authenticated"]["close_code"] == 4401
    assert all(isinstance(record["duration"], float) for record in ended.values())
    hosts = [record for record in records if record["logger"] == "django.security.DisallowedHost"]
    assert len(hosts) == 1, hosts
    assert hosts[0]["level"] == "WARNING" and "exc_info" not in hosts[0]
    assert hosts[0]["host"] == "scanner.example" and hosts[0]["client"] == "127.0.0.1"
    assert token[-20:] not in server.log()


def test_a_bad_log_format_stops_start_up():
    env = live.base_env("sqlite:///unused.sqlite3", LOG_FORMAT="xml")
    with pytest.raises(RuntimeError) as failed:
        live.manage(env, "check")
    assert "LOG_FORMAT='xml': Must be one of: text, json" in str(failed.value)


# The default layer (one reader per process) and the core layer alone (a receive loop per connection).
@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.parametrize("fanout", [1, 0])
async def test_a_redis_outage_while_patching_is_one_warning_and_one_recovery_line(started, fanout):
    redis = started.redis()
    server = started.daphne(started.sqlite(), redis.url, CHANNEL_LAYER_FANOUT=fanout, SESSIONS_PRESENCE_HEARTBEAT=0.5)
    async with wsclient.clients() as opened:
        alice = await wsclient.login(server.ws, server.token("alice"))
        opened.append(alice)
        snapshot = await alice.ok("create", {"title": "outage", "data": {"n": 0}})
        version = snapshot["version"]

        redis.stop(signal.SIGKILL)
        patched_while_down = 0
        for _ in range(30):  # about 3 s of patches while Redis is down, each acknowledged
            ops = [{"op": "replace", "path": "/n", "value": version + 1}]
            assert await alice.ok("patch", {"version": version, "ops": ops}) == {"version": version + 1}
            version += 1
            patched_while_down += 1
            await asyncio.sleep(0.1)
        redis.start()

        def recovered():
            return "channel layer recovered after" in server.log()

        for _ in range(100):  # patch on until a publish (or the layer reader) reaches Redis again
            if recovered():
                break
            ops = [{"op": "replace", "path": "/n", "value": version + 1}]
            assert await alice.ok("patch", {"version": version, "ops": ops}) == {"version": version + 1}
            version += 1
            await asyncio.sleep(0.2)
        assert recovered(), server.log()[-3000:]
    server.stop()

    log = server.log()
    assert log.count("channel layer unavailable (") == 1, log[-6000:]
    assert log.count("channel layer recovered after") == 1, log[-6000:]
    # Those two are the only warnings or errors of the run (a traceback is part of the first).
    loud = [line for line in log.splitlines() if re.match(r"\S+ \S+ (WARNING|ERROR|CRITICAL) ", line)]
    assert len(loud) == 2, loud
    line = next(line for line in log.splitlines() if "channel layer recovered after" in line)
    failures = int(line.rsplit(", ", 1)[1].split()[0])
    assert failures >= patched_while_down, line  # every failed publish was counted
    print(f"outage: {patched_while_down} patches acknowledged while Redis was down; {line.split(': ', 1)[1]}")


def test_an_outage_failing_in_many_threads_is_one_warning_then_one_line_with_the_count(caplog):
    caplog.set_level(logging.WARNING, logger="sessions_app.outages")
    outage = oplog.Outage("test service")
    start = threading.Barrier(8)

    def fail_many():
        start.wait()
        for _ in range(200):
            try:
                raise ConnectionError("down")
            except ConnectionError:
                outage.failed("a call")

    threads = [threading.Thread(target=fail_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outage.down
    outage.ok()
    outage.ok()  # up already: nothing more
    lines = [record for record in caplog.records if record.name == "sessions_app.outages"]
    assert [record.getMessage().split(" (")[0] for record in lines[:1]] == ["test service unavailable"]
    assert lines[0].exc_info is not None  # the first failure's traceback
    assert len(lines) == 2, [record.getMessage() for record in lines]
    assert lines[1].failures == 1600 and lines[1].getMessage().endswith("1600 failures")
    assert not outage.down


@pytest.mark.django_db
def test_axes_lines_show_the_address_and_mask_the_password(caplog, django_user_model, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    django_user_model.objects.create_user("mallory-target", password="right-Pw-1")
    caplog.set_level(logging.INFO, logger="axes")
    body = {"username": "mallory-target", "password": "wrong-Pw-31415"}
    response = APIClient().post("/api/v1/token/", body, format="json", REMOTE_ADDR="203.0.113.7")
    assert response.status_code == 401
    text = "\n".join(record.getMessage() for record in caplog.records if record.name.startswith("axes"))
    assert "203.0.113.7" in text, text
    assert "wrong-Pw-31415" not in text


class Cut:
    """A TCP relay from a free port to PostgreSQL that can be cut (listener and every relayed
    connection closed, as when the database's host goes away) and restored on the same port."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.port = live.free_port()
        self.sockets = []
        self.listener = None

    def start(self):
        self.listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self.sockets.append(self.listener)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def stop(self):
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self.sockets.clear()

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            server = socket.create_connection(("127.0.0.1", self.target_port))
            self.sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source, sink):
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@pytest.mark.postgres
@pytest.mark.slow
async def test_a_database_outage_is_one_warning_and_one_recovery_line(started):
    _, database_url = started.postgres()
    parts = urlsplit(database_url)
    cut = Cut(parts.port or 5432)
    cut.start()
    try:
        relayed = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{cut.port}"))
        server = started.daphne(relayed, DATABASE_POOL_TIMEOUT=1, DATABASE_CONN_MAX_AGE=0)
        token = server.token("alice")
        async with wsclient.clients() as opened:
            alice = await wsclient.login(server.ws, token)
            opened.append(alice)
            await alice.ok("create", {"title": "db outage", "data": {"n": 0}})
            cut.stop()
            refused = 0
            for _ in range(8):  # each handshake needs the database: unavailable, 4503
                client = await wsclient.open_client(server.ws)
                opened.append(client)
                await client.send({"token": token})
                error = await client.recv(timeout=15)
                assert error["code"] == "unavailable", error
                refused += 1
            cut.start()
            for _ in range(30):  # until a handshake gets in again (the pool reconnects)
                if await _login_works(server, token, opened):
                    break
                await asyncio.sleep(0.5)
            else:
                raise AssertionError("no handshake got in after the database was back")
        server.stop()
    finally:
        cut.stop()
    log = server.log()
    assert log.count("database unavailable (") == 1, log[-6000:]
    assert log.count("database recovered after") == 1, log[-6000:]
    line = next(line for line in log.splitlines() if "database recovered after" in line)
    assert int(line.rsplit(", ", 1)[1].split()[0]) >= refused, line
    print(f"database outage: {refused} handshakes refused; {line.split(': ', 1)[1]}")


async def _login_works(server, token, opened):
    client = await wsclient.open_client(server.ws)
    opened.append(client)  # closed by wsclient.clients()
    await client.send({"token": token})
    return (await client.recv(timeout=15))["state"] == "initialised"
