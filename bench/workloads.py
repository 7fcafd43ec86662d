"""The load generator's jobs, one per workload of issue 6 (run inside bench/loadgen.py).

Every job reads these fields: `urls` (WebSocket endpoints), `tokens` (access tokens, connection i
uses `tokens[i % len(tokens)]`), `server_pids`, and returns {"repeats": [figures per window], ...}.
Timing fields: `warmup` and `duration` in seconds, `repeats`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fanout import fanout
from loadgen import Client, ProtocolError, Windows, close_all, open_many, wait_idle
from metrics import process_tree, rss_bytes

Job = dict[str, Any]


def _pickers(job: Job) -> tuple[Callable[[int], str], Callable[[int], str]]:
    urls, tokens = job["urls"], job["tokens"]
    return (lambda i: urls[i % len(urls)]), (lambda i: tokens[i % len(tokens)])


async def _measure(job: Job, loops: list[Awaitable[None]]) -> list[dict]:
    """Run `loops` while Windows measures; cancel them when the last window ends."""
    windows: Windows = job["_windows"]
    tasks = [asyncio.ensure_future(loop) for loop in loops]
    try:
        results = await windows.run(job["warmup"], job["duration"], job["repeats"])
    finally:
        windows.stop = True
        # Let each loop finish its round trip (closing under a reply in flight makes servers log
        # errors), then cancel what is still stuck.
        await asyncio.wait(tasks, timeout=5)
        failures = [t.exception() for t in tasks if t.done() and not t.cancelled()]
        failures = [exc for exc in failures if exc is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if failures:
        # A loop that died stops measuring its connection: say so rather than under-count.
        if not any(r["count"] for r in results):
            raise RuntimeError(f"every loop failed, first: {failures[0]!r}")
        for r in results:
            r.update(failed_loops=len(failures), first_failure=repr(failures[0])[:300])
    return results


async def probe(job: Job) -> dict:
    """Connect, authenticate and ping once on each url: checks a server speaks the protocol."""
    url_for, token_for = _pickers(job)
    seen = []
    for i, _ in enumerate(job["urls"]):
        client = await Client.open(url_for(i), token_for(i))
        data = await client.request("ping")
        await client.close()
        seen.append({"user": client.user, "ping": data})
    return {"probe": seen}


async def ping(job: Job) -> dict:
    """(a) `ping` round trips over `connections` connections, each in a closed loop."""
    url_for, token_for = _pickers(job)
    clients = await open_many(url_for, token_for, job["connections"])
    windows = job["_windows"] = Windows(process_tree(job["server_pids"]))

    async def loop(client: Client) -> None:
        ws, rid = client.ws, 0
        while not windows.stop:
            rid += 1
            start = time.perf_counter()
            await ws.send(f'{{"state":"ping","data":{{}},"id":{rid}}}')
            reply = orjson.loads(await ws.recv())
            elapsed = time.perf_counter() - start
            if reply.get("state") == "ping" and reply.get("id") == rid:
                windows.bucket.append(elapsed)
            else:
                windows.errors += 1

    try:
        return {"repeats": await _measure(job, [loop(c) for c in clients])}
    finally:
        await close_all(clients)


async def connect(job: Job) -> dict:
    """(b) connect + authenticate + close, `connections` at a time; latency is to `initialised`."""
    url_for, token_for = _pickers(job)
    windows = job["_windows"] = Windows(process_tree(job["server_pids"]))

    async def loop(worker: int) -> None:
        while not windows.stop:
            start = time.perf_counter()
            try:
                client = await Client.open(url_for(worker), token_for(worker))
            except (OSError, ProtocolError, TimeoutError, ValueError):
                windows.errors += 1
                await asyncio.sleep(0.05)
                continue
            windows.bucket.append(time.perf_counter() - start)
            await client.close()

    return {"repeats": await _measure(job, [loop(i) for i in range(job["connections"])])}


# A patch of the document builder carries at most this many bytes of items (frames are limited to
# SESSIONS_MAX_MESSAGE_BYTES, 64 KiB by default).
BUILD_CHUNK_BYTES = 48 * 1024


def _items(start: int, size: int) -> list[dict]:
    """Items of a to-do-like list, ~`size` bytes of compact JSON together (at least one)."""
    items, used, i = [], 0, start
    while used < size or not items:
        item = {"id": i, "title": f"item {i}", "text": "lorem ipsum dolor sit amet " * 2, "done": i % 3 == 0}
        items.append(item)
        used += len(orjson.dumps(item)) + 1
        i += 1
    return items


async def build_document(client: Client, index: int, size: int) -> int:
    """Create a session whose document is `{"n": 0, "chunks": [[item, ...], ...]}` of about `size`
    bytes of compact JSON, made with `add` patches of at most BUILD_CHUNK_BYTES; returns its version."""
    data: dict[str, Any] = {"n": 0, "chunks": []}
    base = len(orjson.dumps(data))
    first = _items(0, min(max(size - base, 0), BUILD_CHUNK_BYTES))
    data["chunks"].append(first)
    snapshot = await client.request("create", {"title": f"bench {index}", "data": data})
    version, made, next_id = snapshot["version"], len(orjson.dumps(data)), len(first)
    while made + 64 < size:
        chunk = _items(next_id, min(size - made - 64, BUILD_CHUNK_BYTES))
        next_id += len(chunk)
        reply = await client.request(
            "patch", {"version": version, "ops": [{"op": "add", "path": "/chunks/-", "value": chunk}]}
        )
        version = reply["version"]
        made += len(orjson.dumps(chunk)) + 1
    return version


async def patch(job: Job) -> dict:
    """(c) `patch` round trips, one session per connection (no conflicts between loops); with
    `doc_bytes`, each session's document is first grown to about that size (the `patch-size`
    workload) and every measured patch still replaces one number."""
    url_for, token_for = _pickers(job)
    clients = await open_many(url_for, token_for, job["connections"])
    windows = job["_windows"] = Windows(process_tree(job["server_pids"]))
    size = job.get("doc_bytes")
    versions = {}
    if size:  # built before the windows start (the loops below begin measuring at once)
        built = await asyncio.gather(*(build_document(c, i, size) for i, c in enumerate(clients)))
        versions = dict(enumerate(built))
        await wait_idle(process_tree(job["server_pids"]))

    async def loop(client: Client, index: int) -> None:
        if index in versions:
            version = versions[index]
        else:
            snapshot = await client.request("create", {"title": f"bench {index}", "data": {"n": 0}})
            version = snapshot["version"]
        while not windows.stop:
            ops = [{"op": "replace", "path": "/n", "value": version}]
            start = time.perf_counter()
            try:
                reply = await client.request("patch", {"version": version, "ops": ops})
            except ProtocolError as exc:
                windows.errors += 1
                version = exc.reply.get("data", {}).get("version", version)
                continue
            windows.bucket.append(time.perf_counter() - start)
            version = reply["version"]

    try:
        return {"repeats": await _measure(job, [loop(c, i) for i, c in enumerate(clients)])}
    finally:
        await close_all(clients)


async def memory(job: Job) -> dict:
    """(e) RSS growth of the server per idle authenticated connection, at each of `steps`."""
    url_for, token_for = _pickers(job)
    pids = process_tree(job["server_pids"])
    warm = await open_many(url_for, token_for, 50)
    await asyncio.gather(*(c.request("ping") for c in warm))
    await close_all(warm)
    await wait_idle(pids)
    await asyncio.sleep(job.get("settle", 1.0))
    base = rss_bytes(pids)
    clients: list[Client] = []
    results = []
    try:
        for step in job["steps"]:
            start = time.perf_counter()
            more = await open_many(lambda i: url_for(i + len(clients)), token_for, step - len(clients))
            clients.extend(more)
            opened = time.perf_counter() - start
            await wait_idle(pids)
            await asyncio.sleep(job.get("settle", 1.0))
            rss = rss_bytes(pids)
            results.append(
                {
                    "connections": len(clients),
                    "base_rss_kib": base / 1024,
                    "rss_kib": rss / 1024,
                    "kib_per_conn": (rss - base) / 1024 / len(clients),
                    "open_s": round(opened, 2),
                }
            )
    finally:
        await close_all(clients)
    return {"steps": results}


JOBS: dict[str, Callable[[Job], Awaitable[dict]]] = {
    "probe": probe,
    "ping": ping,
    "connect": connect,
    "patch": patch,
    "memory": memory,
    "fanout": fanout,
}
