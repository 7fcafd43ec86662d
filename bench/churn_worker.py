"""The churn of ``bench/load.py churn`` (bench/churn.py), in a client process of its own.

``--unauth`` sockets connect and never authenticate (the server closes them with 4408 after
``SESSIONS_AUTH_TIMEOUT``; they reconnect at once) and ``--garbage`` sockets authenticate and
send garbage frames in a loop (binary, invalid JSON, non-object JSON, nesting past the limit,
unknown states, a patch outside a session, an empty frame, and last an oversized frame that
closes them with 4413; they reconnect), for ``run_for`` seconds; then one line of JSON on stdout
says what the churn achieved. Run by bench/churn_members.py as

    python bench/churn_worker.py CONFIG.json

at nice +5, so that the measuring process comes first on the client's CPU. Also the helpers both
client processes use (the event loop, percentiles, the loop's lag).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import load  # bench/load.py: the benchmark's connections
import orjson
from websockets.exceptions import ConnectionClosed


def run_loop(coroutine: Any) -> Any:
    """Run ``coroutine`` on uvloop when it is installed (as the benchmark's load generator does)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def percentiles(values: list[float], scale: float = 1000.0) -> dict[str, float | None]:
    """p50, p99 and max of ``values`` times ``scale`` (seconds to ms by default), rounded."""
    if not values:
        return {"p50": None, "p99": None, "max": None}
    ordered = sorted(values)
    return {
        "p50": round(load.percentile(ordered, 0.50) * scale, 1),
        "p99": round(load.percentile(ordered, 0.99) * scale, 1),
        "max": round(ordered[-1] * scale, 1),
    }


async def sample_lag(lags: list[float]) -> None:
    """The measuring loop's own lag: how late a 50 ms sleep wakes up."""
    while True:
        began = time.perf_counter()
        await asyncio.sleep(0.05)
        lags.append(time.perf_counter() - began - 0.05)


# --- the churn ------------------------------------------------------------------------------------------


def garbage_frames(max_bytes: int, cycle: int) -> list[tuple[str, str | bytes, str]]:
    """One round of garbage: (name, frame, the error code the protocol answers with). The last
    frame is over the size limit (text and binary in turn): the server closes with 4413."""
    oversized: str | bytes = "x" * (max_bytes + 1024) if cycle % 2 == 0 else b"\x00" * (max_bytes + 1024)
    return [
        ("binary", b"\x00\xffnot text\x01", "unsupported_frame"),
        ("invalid json", '{"state": "ping", "id": 1', "invalid_json"),
        ("not an object", "[1, 2, 3]", "invalid_message"),
        ("too deep", "[" * 80 + "]" * 80, "invalid_message"),
        ("unknown state", '{"state": "no-such-state", "data": {}, "id": 2}', "unknown_state"),
        ("patch, not joined", '{"state": "patch", "data": {"version": 0, "ops": []}, "id": 3}', "not_joined"),
        ("empty text", "", "unsupported_frame"),
        ("oversized " + ("text" if cycle % 2 == 0 else "binary"), oversized, "message_too_large"),
    ]


@dataclass
class ChurnStats:
    connects: Counter[str] = field(default_factory=Counter)
    connect_failures: Counter[str] = field(default_factory=Counter)
    closes: Counter[str] = field(default_factory=Counter)
    replies: Counter[str] = field(default_factory=Counter)
    unexpected: Counter[str] = field(default_factory=Counter)
    frames_sent: int = 0
    no_reply: int = 0
    auth_close_after: list[float] = field(default_factory=list)


async def unauthenticated(url: str, cfg: dict[str, Any], deadline: float, st: ChurnStats) -> None:
    """Connect, send nothing, wait for the server's 4408; again until ``deadline``."""
    await asyncio.sleep(random.uniform(0, cfg["auth_timeout"]))  # spread: a steady churn, not waves
    while (left := deadline - time.monotonic()) > 0.5:
        try:
            ws = await load.open_ws(url, min(10.0, left))
        except Exception as exc:  # noqa: BLE001 - counted by type; the loop goes on
            st.connect_failures[f"unauth {type(exc).__name__}"] += 1
            await asyncio.sleep(0.5)
            continue
        st.connects["unauth"] += 1
        opened = time.monotonic()
        try:
            async with asyncio.timeout(deadline - time.monotonic()):
                while True:
                    raw = await ws.recv()
                    code = orjson.loads(raw).get("code") if isinstance(raw, str) else "binary"
                    if code != "auth_timeout":
                        st.unexpected[f"unauth got {code}"] += 1
        except ConnectionClosed as exc:
            st.closes[f"unauth {load.close_code(exc)}"] += 1
            st.auth_close_after.append(time.monotonic() - opened)
            if load.close_code(exc) != 4408:
                st.unexpected[f"unauth closed {load.close_code(exc)} after {time.monotonic() - opened:.0f} s open"] += 1
        except TimeoutError:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 5)
            return


async def garbage(url: str, token: str, cfg: dict[str, Any], deadline: float, st: ChurnStats) -> None:
    """Authenticate, send a round of garbage (one frame per ``garbage_interval``, each answered),
    end with the oversized frame (closed 4413); reconnect, until ``deadline``."""
    await asyncio.sleep(random.uniform(0, 2.0))
    for cycle in itertools.count():
        if deadline - time.monotonic() < 0.5:
            return
        try:
            ws = await load.open_ws(url, 10)
            await ws.send(orjson.dumps({"token": token}).decode())
            first = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        except Exception as exc:  # noqa: BLE001 - counted by type; the loop goes on
            st.connect_failures[f"garbage {type(exc).__name__}"] += 1
            await asyncio.sleep(0.5)
            continue
        if first.get("state") != "initialised":
            st.connect_failures[f"garbage handshake {first.get('code')}"] += 1
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 5)
            await asyncio.sleep(0.5)
            continue
        st.connects["garbage"] += 1
        opened = time.monotonic()
        name, step = "token", "reply"
        try:
            for name, frame, expected in garbage_frames(cfg["max_message_bytes"], cycle):
                if time.monotonic() >= deadline:
                    break
                step = "send"
                await ws.send(frame)
                st.frames_sent += 1
                step = "reply"
                try:
                    reply = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
                except TimeoutError:
                    st.no_reply += 1
                    break
                code = reply.get("code")
                st.replies[code] += 1
                if code != expected:
                    st.unexpected[f"{name}: {code} (expected {expected})"] += 1
                if expected == "message_too_large":
                    try:
                        await asyncio.wait_for(ws.recv(), 10)
                        st.unexpected[f"{name}: a frame after the error, not the close"] += 1
                    except ConnectionClosed as exc:
                        st.closes[f"garbage {load.close_code(exc)}"] += 1
                    break
                await asyncio.sleep(cfg["garbage_interval"])
        except ConnectionClosed as exc:
            st.closes[f"garbage {load.close_code(exc)} (unexpected)"] += 1
            open_for = time.monotonic() - opened
            st.unexpected[
                f"garbage closed {load.close_code(exc)} at the {step} of {name!r}, {open_for:.0f} s open: {exc}"
            ] += 1
        except TimeoutError:
            st.no_reply += 1
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 5)


async def churn(cfg: dict[str, Any]) -> dict[str, Any]:
    st = ChurnStats()
    started = time.monotonic()
    deadline = started + cfg["run_for"]
    urls = cfg["urls"]
    tasks = [unauthenticated(urls[i % len(urls)], cfg, deadline, st) for i in range(cfg["unauth"])]
    tasks += [garbage(urls[i % len(urls)], token, cfg, deadline, st) for i, token in enumerate(cfg["tokens"])]
    cpu = time.process_time()
    lags: list[float] = []
    lag = asyncio.ensure_future(sample_lag(lags))
    await asyncio.wait_for(asyncio.gather(*tasks), cfg["run_for"] + 60)
    lag.cancel()
    elapsed = time.monotonic() - started
    return {
        "elapsed_s": round(elapsed, 1),
        "connects": dict(st.connects),
        "connects_per_s": round(sum(st.connects.values()) / elapsed, 1),
        "connect_failures": dict(st.connect_failures),
        "closes": dict(st.closes),
        "garbage_frames_sent": st.frames_sent,
        "garbage_frames_per_s": round(st.frames_sent / elapsed, 1),
        "garbage_replies": dict(st.replies),
        "garbage_no_reply": st.no_reply,
        "unexpected": dict(st.unexpected),
        "auth_timeout_close_after_s": percentiles(st.auth_close_after, 1.0),
        "cpu_percent": round(100 * (time.process_time() - cpu) / elapsed, 1),
        "loop_lag_ms": percentiles(lags),
    }


def main(config_path: str) -> int:
    with contextlib.suppress(OSError):
        os.nice(5)  # the measuring process comes first on the client's CPU
    cfg = json.loads(Path(config_path).read_text())
    print(json.dumps(run_loop(churn(cfg))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
