"""Load generator job (d): one `patch` fanned out to every member of a session.

Job fields: `urls` (the server processes; member i connects to `urls[i % len(urls)]`, the patcher to
`urls[0]`), `tokens` and `usernames` (same order; user 0 owns the session and invites the others as
editors), `members` (receiving connections), `samples` (patches per window), `repeats`,
`warmup_patches`, `server_pids`, and optionally `idle_pids` (every server running side by side: the
job waits until all are idle before its first patch, so that another server's teardown of its
members does not land in this one's window).

A patch's delivery latency runs from just before the patcher sends it to the arrival of the `patched`
push at the last member. The client stamps each arrival as soon as its reader task runs, so with
1,000 members the figure includes the client's own cost of reading the pushes that came before (see
`client_ms_per_patch` in the result: the client's CPU time per round of pushes).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from loadgen import Client, close_all, open_many, wait_idle
from metrics import cpu_seconds, percentile, process_tree, self_cpu_seconds

DELIVERY_TIMEOUT = 5.0
# Stop after this many patches that did not reach every member: the figures would be meaningless
# and each costs DELIVERY_TIMEOUT.
MAX_INCOMPLETE = 2


class Arrivals:
    """Arrival times of `patched` pushes by version; wakes the waiter when all have come."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.times: dict[int, list[float]] = {}
        self.waiters: dict[int, asyncio.Event] = {}

    async def reader(self, client: Client) -> None:
        """Read one member's pushes until its connection closes."""
        async for raw in client.ws:
            stamp = time.perf_counter()
            if '"patched"' not in raw:
                continue
            message = orjson.loads(raw)
            if message.get("state") != "patched":
                continue
            version = message["data"]["version"]
            arrived = self.times.setdefault(version, [])
            arrived.append(stamp)
            if len(arrived) == self.expected and version in self.waiters:
                self.waiters[version].set()


async def _setup(job: dict[str, Any]) -> tuple[Client, list[Client], dict]:
    """Create the session, invite the users, connect and join the members."""
    urls, tokens, usernames = job["urls"], job["tokens"], job["usernames"]
    owner = await Client.open(urls[0], tokens[0])
    snapshot = await owner.request("create", {"title": "bench fan-out", "data": {"n": 0}})
    for name in usernames[1:]:
        await owner.request("invite", {"username": name, "role": "editor"})
    members = await open_many(lambda i: urls[i % len(urls)], lambda i: tokens[i % len(tokens)], job["members"])
    # Member i is user i % users: the first batch joins one connection per user, so the `presence`
    # pushes (one per arriving user) go to few connections; later tabs of a present user cause none.
    for start in range(0, len(members), 50):
        batch = members[start : start + 50]
        await asyncio.gather(*(m.request("join", {"session": snapshot["id"]}) for m in batch))
    return owner, members, snapshot


async def fanout(job: dict[str, Any]) -> dict:
    """Measure delivery latency to the last of `members` connections, `samples` patches a window."""
    arrivals = Arrivals(job["members"])
    pids = process_tree(job["server_pids"])
    owner, members, snapshot = await _setup(job)
    readers = [asyncio.ensure_future(arrivals.reader(m)) for m in members]
    version = snapshot["version"]
    incomplete: list[str] = []

    async def one_patch() -> tuple[float, float, float, int]:
        """Send one patch; return (last-member s, median-member s, reply s, members missed)."""
        nonlocal version
        target = version + 1
        arrivals.waiters[target] = event = asyncio.Event()
        ops = [{"op": "replace", "path": "/n", "value": target}]
        start = time.perf_counter()
        reply = await owner.request("patch", {"version": version, "ops": ops})
        replied = time.perf_counter() - start
        version = reply["version"]
        try:
            await asyncio.wait_for(event.wait(), DELIVERY_TIMEOUT)
        except TimeoutError:
            pass
        stamps = arrivals.times.pop(version, [])
        arrivals.waiters.pop(target, None)
        missed = arrivals.expected - len(stamps)
        if missed:
            incomplete.append(f"version {version}: {len(stamps)} of {arrivals.expected} members got it")
            if len(incomplete) >= MAX_INCOMPLETE:
                raise RuntimeError(f"pushes lost ({DELIVERY_TIMEOUT:g} s timeout): {'; '.join(incomplete)}")
        if not stamps:
            return DELIVERY_TIMEOUT, DELIVERY_TIMEOUT, replied, missed
        last = DELIVERY_TIMEOUT if missed else max(stamps) - start
        return last, percentile(stamps, 50) - start, replied, missed

    try:
        await wait_idle(process_tree(job.get("idle_pids") or job["server_pids"]))
        for _ in range(job["warmup_patches"]):
            await one_patch()
            await asyncio.sleep(0.02)
        results = []
        for _ in range(job["repeats"]):
            cpu0, own0, t0 = cpu_seconds(pids), self_cpu_seconds(), time.perf_counter()
            samples = []
            for _ in range(job["samples"]):
                samples.append(await one_patch())
                await asyncio.sleep(0.02)
            cpu1, own1, t1 = cpu_seconds(pids), self_cpu_seconds(), time.perf_counter()
            delivered = sum(job["members"] - s[3] for s in samples)
            results.append(
                {
                    "count": len(samples),
                    "errors": sum(1 for s in samples if s[3]),
                    "missed": sum(s[3] for s in samples),
                    "p50_ms": percentile([s[0] for s in samples], 50) * 1000,
                    "p99_ms": percentile([s[0] for s in samples], 99) * 1000,
                    "median_member_p50_ms": percentile([s[1] for s in samples], 50) * 1000,
                    "reply_p50_ms": percentile([s[2] for s in samples], 50) * 1000,
                    "cpu_us_per_op": (cpu1 - cpu0) / delivered * 1e6 if delivered else None,
                    "server_cpu_util": (cpu1 - cpu0) / (t1 - t0),
                    "client_cpu_util": (own1 - own0) / (t1 - t0),
                    # The client's own CPU per patch round: when close to p50, the client is the
                    # limit of what this machine can show.
                    "client_ms_per_patch": (own1 - own0) / len(samples) * 1000,
                    "wall_s": round(t1 - t0, 3),
                }
            )
        return {"repeats": results}
    finally:
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await close_all([owner, *members])
