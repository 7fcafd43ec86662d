"""The workloads of issue 6 as the harness runs them: which servers, which jobs, in which order."""

from __future__ import annotations

import logging

import fixtures
from environment import ensure_redis
from harness import SERVER_CPU, Bench
from servers import ServerSpec, running

logger = logging.getLogger("bench")

WORKLOADS = ("ping", "connect", "patch", "fanout", "memory")
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
) -> None:
    """Run each variant's job `repeats` times over all `specs`, round-robin, servers side by side."""
    tokens, _ = bench.tokens(db)
    with bench.side_by_side(specs, env, db) as started:
        for variant, job in variants:
            for repeat in range(bench.params.repeats):
                for run in started.values():
                    job_once = {**job, "tokens": tokens, "repeats": 1}
                    bench.measure(workload, variant, run.spec, job_once, [run], repeat=repeat + 1)


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


def run_fanout(bench: Bench) -> None:
    """(d) one patch to every member, members split over two daphne processes on Redis."""
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
    tokens, usernames = bench.tokens(db)
    job = {"job": "fanout", "tokens": tokens, "usernames": usernames, "samples": p.fanout_samples}
    job |= {"repeats": p.repeats, "warmup_patches": p.fanout_warmup, "timeout": 400}
    cpus = bench.args.fanout_cpus
    for layer, backend in LAYERS.items():
        env = bench.env(db, REDIS_URL=redis_url, CHANNEL_LAYER_BACKEND=backend)
        for spec in specs:
            try:
                with running(spec, env, bench.work, cpus=cpus) as runs:
                    bench.probe(runs, db)
                    for members in p.fanout_members:
                        variant = f"{members} members, {layer}"
                        bench.measure("fanout", variant, spec, job | {"members": members}, runs, cpus=cpus)
            except Exception as exc:  # noqa: BLE001 - record the failure, go on
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


RUNNERS = {"ping": run_ping, "connect": run_connect, "patch": run_patch, "fanout": run_fanout, "memory": run_memory}
