"""The workloads of issue 6 as the harness runs them: which servers, which jobs, in which order."""

from __future__ import annotations

import logging

import fixtures
from environment import ensure_redis
from harness import SERVER_CPU, Bench
from servers import ServerSpec, running

logger = logging.getLogger("bench")

WORKLOADS = ("ping", "connect", "patch", "patch-size", "fanout", "memory")
LAYERS = {
    "core": "channels_redis.core.RedisChannelLayer",
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
}


def interleaved(
    bench: Bench,
    workload: str,
    variants: list[tuple[str, dict]],
    specs: list[ServerSpec],
    env: dict[str, str],
    db: fixtures.Database,
    cpus: tuple[str, ...] = (SERVER_CPU,),
    across_variants: bool = False,
) -> None:
    """Run each variant's job `repeats` times over all `specs`, round-robin, servers side by side,
    each server as one process per entry of `cpus`; with `across_variants`, the repeats go
    round-robin over the variants as well."""
    tokens, _ = bench.tokens(db)
    with bench.side_by_side(specs, env, db, cpus) as started:
        every_pid = [run.pid for runs in started.values() for run in runs]
        if across_variants:  # round-robin over the variants too (patch-size: a slow spell hits every size)
            order = [(v, r) for r in range(bench.params.repeats) for v in variants]
        else:
            order = [(v, r) for v in variants for r in range(bench.params.repeats)]
        for (variant, job), repeat in order:
            for runs in started.values():
                job_once = {**job, "tokens": tokens, "repeats": 1, "idle_pids": every_pid}
                bench.measure(workload, variant, runs[0].spec, job_once, runs, repeat=repeat + 1, cpus=cpus)


def run_ping(bench: Bench) -> None:
    """(a) ping round trips at each connection count."""
    p = bench.params
    variants = [
        (f"{n} conns", {"job": "ping", "connections": n, "warmup": p.warmup, "duration": p.duration})
        for n in p.ping_connections
    ]
    interleaved(bench, "ping", variants, bench.specs_for("ping"), bench.env(), bench.sqlite)


def run_connect(bench: Bench) -> None:
    """(b) connect + authenticate, `connect_concurrency` at a time."""
    p = bench.params
    n = p.connect_concurrency
    variants = [(f"{n} concurrent", {"job": "connect", "connections": n, "warmup": p.warmup, "duration": p.duration})]
    interleaved(bench, "connect", variants, bench.specs_for("connect"), bench.env(), bench.sqlite)


def run_patch(bench: Bench) -> None:
    """(c) patch round trips on SQLite, then on a throwaway PostgreSQL database."""
    p = bench.params
    specs = bench.specs_for("patch")
    if not specs:
        return
    job = {"job": "patch", "connections": p.patch_connections, "warmup": p.warmup, "duration": p.duration}
    interleaved(bench, "patch", [("sqlite", job)], specs, bench.env(), bench.sqlite)
    pg = bench.postgres()
    if pg is None:
        bench.note("patch: PostgreSQL not reachable on 127.0.0.1:5432, skipped")
        return
    interleaved(bench, "patch", [("postgresql", job)], specs, bench.env(pg), pg)


def size_label(size: int) -> str:
    """A document size as the variants name it: `1 KiB`, `64 KiB`, `1 MiB`."""
    return f"{round(size / 1048576)} MiB" if size >= 1000 * 1024 else f"{round(size / 1024)} KiB"


def run_patch_size(bench: Bench) -> None:
    """(f) one-number `replace` patches to documents of each of `patch_sizes` bytes (issue 16
    target 1), on SQLite, then on PostgreSQL; each size is a variant, interleaved over the servers."""
    p = bench.params
    specs = bench.specs_for("patch-size")
    if not specs:
        return
    base = {"job": "patch", "connections": p.patch_size_connections, "warmup": p.warmup, "duration": p.duration}
    base["timeout"] = 400
    for name, db in (("sqlite", bench.sqlite), ("postgresql", bench.postgres())):
        if db is None:
            bench.note("patch-size: PostgreSQL not reachable on 127.0.0.1:5432, skipped")
            continue
        variants = [(f"{size_label(n)}, {name}", base | {"doc_bytes": n}) for n in p.patch_sizes]
        interleaved(bench, "patch-size", variants, specs, bench.env(db), db, across_variants=True)


def run_fanout(bench: Bench) -> None:
    """(d) one patch to every member, members split over two daphne processes on Redis: the plain
    Channels peer, ours on the stock channels_redis layer and ours on its own layer, side by side
    and interleaved, on each layer of channels_redis (issue 10)."""
    p = bench.params
    specs = bench.specs_for("fanout")
    if not specs:
        return
    redis_url = ensure_redis(bench.args.redis_url, bench.work)
    # Two processes writing one SQLite file lock each other out; PostgreSQL is what a
    # multi-process deployment runs on.
    db = bench.postgres()
    if db is None:
        bench.note("fanout: PostgreSQL not reachable, two processes share a SQLite file instead")
        db = bench.sqlite
    if db.users != bench.sqlite.users and any(not s.ours for s in specs):
        # The Channels peer looks users up in the run's SQLite file (it keeps no sessions).
        bench.note("fanout: user ids differ between SQLite and PostgreSQL, the Channels peer is skipped")
        specs = [s for s in specs if s.ours]
    tokens, usernames = bench.tokens(db)
    job = {"job": "fanout", "tokens": tokens, "usernames": usernames, "samples": p.fanout_samples}
    job |= {"warmup_patches": p.fanout_warmup, "timeout": 400}
    for layer, backend in LAYERS.items():
        env = bench.env(db, REDIS_URL=redis_url, CHANNEL_LAYER_BACKEND=backend)
        variants = [(f"{n} members, {layer}", job | {"members": n}) for n in p.fanout_members]
        try:
            interleaved(bench, "fanout", variants, specs, env, db, cpus=bench.args.fanout_cpus)
        except Exception as exc:  # noqa: BLE001 - record the failure, go on
            for spec in specs:
                bench.failed("fanout", layer, spec, exc)


def run_memory(bench: Bench) -> None:
    """(e) RSS per idle authenticated connection; a fresh server for every repeat."""
    p = bench.params
    tokens, _ = bench.tokens(bench.sqlite)
    job = {"job": "memory", "steps": list(p.memory_steps), "tokens": tokens, "timeout": 400}
    for repeat in range(p.memory_repeats):
        for spec in bench.specs_for("memory"):
            logger.info("memory on %s, repeat %d", spec.label, repeat + 1)
            try:
                with running(spec, bench.env(), bench.work, cpus=(SERVER_CPU,)) as runs:
                    bench.probe(runs)
                    result = bench.loadgen(job, runs)
                for step in result["steps"]:
                    bench.record("memory", f"{step['connections']} idle", spec, [step])
            except Exception as exc:  # noqa: BLE001 - record the failure, go on
                bench.failed("memory", "-", spec, exc)


RUNNERS = {
    "ping": run_ping,
    "connect": run_connect,
    "patch": run_patch,
    "patch-size": run_patch_size,
    "fanout": run_fanout,
    "memory": run_memory,
}
