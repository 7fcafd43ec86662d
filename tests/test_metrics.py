"""Prometheus metrics (sessions_app.metrics, GET /metrics; docs/metrics.md).

First through the consumer in this process (the in-memory registry): frames and latency by state,
errors by code, handshakes, and the bounds on label values. Then live: daphne processes sharing a
PROMETHEUS_MULTIPROC_DIR and a private Redis, driven by real clients, scraped over HTTP and parsed
with prometheus_client's parser: every figure moves, whichever process the scrape reaches.
"""

import os
import signal
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import AsyncClient, override_settings
from prometheus_client import REGISTRY, Histogram

from sessions_app import metrics, metrics_view
from sessions_app.conf import app_settings
from sessions_app.groups import SessionGroups
from sessions_app.localchannels import LocalChannel
from tests import live, wsclient
from tests.scrape import labels_of, scrape, total, value
from tests.utils import connected, open_socket

pytestmark = pytest.mark.django_db(transaction=True)

LIVE = {"SESSIONS_PRESENCE_HEARTBEAT": 0.5, "SESSIONS_PRESENCE_TTL": 5, "SESSIONS_MAX_CONNECTIONS_PER_USER": 2}


def sample(name: str, **labels: str) -> float:
    """A sample of this process's registry, after the counts kept per frame are flushed."""
    metrics.flush()
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --- in this process -----------------------------------------------------------------------------


async def test_frames_latency_and_errors_are_counted_by_state_and_code(alice: Any) -> None:
    before = {
        "pings": sample("sessions_frames_total", state="ping"),
        "latency": sample("sessions_reply_seconds_count", state="ping"),
        "unknown": sample("sessions_frames_total", state="unknown"),
        "invalid_json": sample("sessions_errors_total", code="invalid_json"),
        "unknown_state": sample("sessions_errors_total", code="unknown_state"),
    }
    async with connected(alice) as client:
        for _ in range(3):
            await client.ok("ping")
        await client.send_text("{not json")
        assert (await client.recv())["code"] == "invalid_json"
        assert (await client.request("no-such-state"))["code"] == "unknown_state"
    assert sample("sessions_frames_total", state="ping") == before["pings"] + 3
    assert sample("sessions_reply_seconds_count", state="ping") == before["latency"] + 3
    assert sample("sessions_reply_seconds_bucket", state="ping", le="+Inf") >= 3
    assert sample("sessions_frames_total", state="unknown") == before["unknown"] + 2
    assert sample("sessions_errors_total", code="invalid_json") == before["invalid_json"] + 1
    assert sample("sessions_errors_total", code="unknown_state") == before["unknown_state"] + 1


async def test_a_client_cannot_create_label_values(alice: Any) -> None:
    tallies = len(metrics._tallies)
    async with connected(alice) as client:
        for index in range(50):
            assert (await client.request(f"made-up-{index}"))["code"] == "unknown_state"
    assert len(metrics._tallies) <= tallies + 1  # at most the "unknown" state's, if it was new
    assert not any(state.startswith("made-up") for state in metrics._states if state)
    families = {sample.labels.get("state") for family in REGISTRY.collect() for sample in family.samples}
    assert not any(str(state).startswith("made-up") for state in families)


async def test_handshakes_by_outcome_and_connections_open(alice: Any) -> None:
    ok, refused = (
        sample("sessions_handshakes_total", outcome="ok"),
        sample("sessions_handshakes_total", outcome="not_authenticated"),
    )
    opened = sample("sessions_connections_open")
    async with connected(alice):
        assert sample("sessions_connections_open") == opened + 1
        bad = await open_socket()
        await bad.send({"token": "not a token"})
        assert (await bad.recv())["code"] == "not_authenticated"
        assert await bad.closed() == 4401
    assert sample("sessions_connections_open") == opened
    assert sample("sessions_handshakes_total", outcome="ok") == ok + 1
    assert sample("sessions_handshakes_total", outcome="not_authenticated") == refused + 1


def test_the_flushed_histogram_equals_one_observed_directly() -> None:
    """The per-frame tally writes prometheus_client's histogram internals (``_sum``, ``_buckets``):
    the result must be what ``observe`` gives, so an upgrade that changes them fails here."""
    direct = Histogram("test_direct_seconds", "direct", buckets=metrics.BUCKETS, registry=None)
    tally = metrics._StateTally("ping")
    before = [tally.histogram._buckets[i].get() for i in range(len(metrics.BUCKETS))]
    sum_before = tally.histogram._sum.get()
    for seconds in (0.0001, 0.0005, 0.003, 0.003, 0.2, 7.0, 30.0):
        direct.observe(seconds)
        tally.buckets[metrics.bisect_left(metrics.BUCKETS, seconds)] += 1
        tally.seconds += seconds
    tally.flush()
    after = [tally.histogram._buckets[i].get() - before[i] for i in range(len(metrics.BUCKETS))]
    assert after == [direct._buckets[i].get() for i in range(len(metrics.BUCKETS))]
    assert tally.histogram._sum.get() - sum_before == pytest.approx(direct._sum.get())


@pytest.mark.parametrize(
    ("networks", "address", "allowed"),
    [
        (("127.0.0.0/8", "::1/128"), "127.0.0.1", True),
        (("127.0.0.0/8", "::1/128"), "::1", True),
        (("127.0.0.0/8", "::1/128"), "::ffff:127.0.0.1", True),
        (("127.0.0.0/8", "::1/128"), "10.1.2.3", False),
        (("10.0.0.0/8",), "10.1.2.3", True),
        (("10.0.0.0/8",), "", False),
        ((), "127.0.0.1", False),
    ],
)
def test_metrics_are_for_the_configured_networks(networks: tuple[str, ...], address: str, allowed: bool) -> None:
    with override_settings(SESSIONS_METRICS_NETWORKS=networks):
        assert metrics_view.allowed(address) is allowed


async def test_the_endpoint_answers_loopback_and_refuses_others() -> None:
    response = await AsyncClient().get("/metrics")  # from 127.0.0.1
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert b"sessions_connections_open" in response.content
    with override_settings(SESSIONS_METRICS_NETWORKS=["10.0.0.0/8"]):
        assert (await AsyncClient().get("/metrics")).status_code == 403
    assert (await AsyncClient().post("/metrics")).status_code == 405


def test_a_bad_metrics_network_stops_start_up() -> None:
    with pytest.raises(ImproperlyConfigured, match="SESSIONS_METRICS_NETWORKS"):
        with override_settings(SESSIONS_METRICS_NETWORKS=["10.0.0.0/33"]):
            pass
    assert app_settings.METRICS_NETWORKS == ("127.0.0.0/8", "::1/128")


# --- live: several processes, one scrape ---------------------------------------------------------


def moved(server: live.Server, check: Any, what: str) -> dict[Any, float]:
    """Scrape ``server`` until ``check(samples)`` holds (counts reach the files within a second)."""
    found: dict[Any, float] = {}

    def ready() -> bool:
        found.clear()
        found.update(scrape(server.http))
        return bool(check(found))

    live.wait_until(ready, 10, what, interval=0.2)
    return found


def heartbeats(samples: dict[Any, float]) -> set[str]:
    """The processes (pid labels) whose last heartbeat is set."""
    name = "sessions_process_heartbeat_timestamp_seconds"
    return {pid for pid in labels_of(samples, name, "pid") if value(samples, name, pid=pid) > 0}


@pytest.mark.slow
async def test_every_process_is_counted_and_the_figures_move(started: live.Processes, tmp_path: Path) -> None:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    redis = started.redis()
    first = started.daphne(started.sqlite(), redis.url, PROMETHEUS_MULTIPROC_DIR=directory, **LIVE)
    second = started.another(first)
    base = scrape(first.http)
    frames = value(base, "sessions_frames_total", state="ping")

    async with wsclient.clients() as opened:
        alice = await wsclient.login(first.ws, first.token("alice"))
        bob = await wsclient.login(second.ws, first.token("bob"))
        opened += [alice, bob]
        # Both processes' connections, whichever process answers the scrape.
        for server in (first, second):
            moved(server, lambda s: value(s, "sessions_connections_open") == 2, "2 connections open")
        # Heartbeats: one series per live process (label pid), each moving.
        pids = {str(first.pid), str(second.pid)}
        beats = moved(first, lambda s: heartbeats(s) == pids, "a heartbeat of each process")
        count = value(beats, "sessions_process_heartbeats_total")
        moved(first, lambda s: value(s, "sessions_process_heartbeats_total") > count, "more heartbeats")

        for _ in range(3):
            await alice.ok("ping")
        await bob.ok("ping")
        await bob.send("[1]")
        assert (await bob.recv())["code"] == "invalid_message"
        got = moved(second, lambda s: value(s, "sessions_frames_total", state="ping") == frames + 4, "4 pings")
        assert (
            value(got, "sessions_reply_seconds_count", state="ping")
            == value(base, "sessions_reply_seconds_count", state="ping") + 4
        )
        assert value(got, "sessions_reply_seconds_bucket", state="ping", le="+Inf") >= 4
        assert value(got, "sessions_reply_seconds_sum", state="ping") > 0
        assert value(got, "sessions_errors_total", code="invalid_message") == 1
        assert value(got, "sessions_frames_total", state="unknown") == 1
        assert value(got, "sessions_handshakes_total", outcome="ok") == 2

        # Pushes across the processes: bob's join is pushed to alice, alice's patch to bob.
        session = await alice.ok("create", {"title": "Metrics", "data": {}})
        await alice.ok("invite", {"username": "bob", "role": "editor"})
        await bob.ok("join", {"session": session["id"]})
        await alice.push("presence")
        await alice.ok("patch", {"version": 0, "ops": [{"op": "add", "path": "/a", "value": 1}]})
        await bob.push("patched")
        moved(first, lambda s: value(s, "sessions_pushes_sent_total") >= 2, "2 pushes sent")

        # Handshakes refused, by code: a bad token, and alice past her 2 connections.
        refused = await wsclient.open_client(first.ws)
        await refused.send({"token": "nonsense"})
        assert (await refused.recv())["code"] == "not_authenticated"
        second_alice = await wsclient.login(second.ws, first.token("alice"))
        opened.append(second_alice)
        third = await wsclient.open_client(second.ws)
        await third.send({"token": first.token("alice")})
        assert (await third.recv())["code"] == "too_many_connections"
        got = moved(
            first, lambda s: value(s, "sessions_handshakes_total", outcome="too_many_connections") == 1, "refusals"
        )
        assert value(got, "sessions_handshakes_total", outcome="not_authenticated") == 1
        assert value(got, "sessions_connections_open") == 3

        # The channel layer down: the patch is committed, its push cannot be published.
        redis.stop(signal.SIGKILL)
        await alice.ok("patch", {"version": 1, "ops": [{"op": "add", "path": "/b", "value": 2}]})
        moved(second, lambda s: value(s, "sessions_layer_errors_total", operation="publish") >= 1, "a layer error")

        await second_alice.close()
        moved(first, lambda s: value(s, "sessions_connections_open") == 2, "a connection closed")

    # A process whose database is down counts its refusals and database errors too.
    nowhere = f"postgres://postgres@127.0.0.1:{live.free_port()}/interactive_metrics_nowhere"
    no_db = started.start(
        live.Daphne(
            started.workdir, live.base_env(nowhere, PROMETHEUS_MULTIPROC_DIR=directory, DATABASE_POOL_TIMEOUT=1, **LIVE)
        )
    )
    closed = await wsclient.open_client(no_db.ws)
    await closed.send({"token": first.token("carol")})
    assert (await closed.recv(timeout=20))["code"] == "unavailable"
    await closed.close()
    got = moved(first, lambda s: total(s, "sessions_database_errors_total") >= 1, "a database error")
    assert value(got, "sessions_handshakes_total", outcome="unavailable") == 1

    # A process stopped (SIGTERM) or killed (SIGKILL) leaves the live figures; its counts stay.
    second_pid, killed_pid = second.pid, no_db.pid
    second.stop()
    no_db.kill()
    got = moved(
        first,
        lambda s: labels_of(s, "sessions_process_heartbeat_timestamp_seconds", "pid") == {str(first.pid)},
        "only the first process's heartbeat series",
    )
    assert value(got, "sessions_connections_open") == 0  # alice and bob closed with the clients
    assert value(got, "sessions_frames_total", state="ping") == frames + 4
    assert not list(directory.glob(f"gauge_live*_{second_pid}.db"))
    assert not list(directory.glob(f"gauge_live*_{killed_pid}.db"))
    assert os.path.exists(directory / f"counter_{second_pid}.db")


def test_pushes_sent_and_dropped_by_reason() -> None:
    """SessionGroups.accepts decides for every session push; LocalChannel drops past its capacity."""

    class Member:  # what SessionGroups needs of a connection (groups.Member)
        session_version = 0
        session_id = role = None
        channel_layer = channel_name = None

    def counts() -> tuple[float, ...]:
        reasons = (metrics.SEEN, metrics.LEFT, metrics.OVERFLOW)
        dropped = (sample("sessions_pushes_dropped_total", reason=reason) for reason in reasons)
        return (sample("sessions_pushes_sent_total"), *dropped)

    before = counts()
    groups = SessionGroups(Member())
    groups.names, groups.joined = ("session.1",), "session.1"
    assert groups.accepts("session.1", 1) and groups.accepts("session.1", 2)
    assert not groups.accepts("session.1", 2)  # already has version 2: seen
    assert not groups.accepts("session.2", 1)  # not in that group (left): left
    channel = LocalChannel()
    for index in range(3):
        channel.deliver({"type": "session.push", "n": index}, 1, "test")
    sent, seen, left, overflow = (now - then for now, then in zip(counts(), before, strict=True))
    assert (sent, seen, left, overflow) == (2, 1, 1, 2)
