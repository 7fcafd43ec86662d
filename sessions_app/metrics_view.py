"""``GET /metrics``: the Prometheus text exposition of every process of this host (docs/metrics.md).

Not public: answered only to clients whose address is in ``SESSIONS_METRICS_NETWORKS`` (loopback by
default; others get 403). Behind a proxy the address is the proxy's unless daphne runs with
``--proxy-headers`` (then it is the client's, from ``X-Forwarded-For``): keep the proxy from
forwarding ``/metrics`` from outside, or run daphne with ``--proxy-headers``.

In multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``) the answer is the sum over the files of every
process there; the files of live gauges (connections open, last heartbeat) of processes that no
longer exist (killed with SIGKILL, which skips the exit hook) are removed first, so they stop
counting. The files are read in a worker thread: neither the event loop nor the database thread
waits for a scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import ipaddress
import os
import re
from functools import lru_cache

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

from . import metrics
from .conf import app_settings

_LIVE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db$")


@lru_cache(maxsize=8)
def _networks(
    spec: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in spec)


def allowed(address: str | None) -> bool:
    """Whether a client at ``address`` may read the metrics (``SESSIONS_METRICS_NETWORKS``)."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in _networks(app_settings.METRICS_NETWORKS))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def forget_dead_processes(path: str) -> list[int]:
    """Remove the live-gauge files of the processes of ``path`` that are gone (what
    ``multiprocess.mark_process_dead`` removes); returns their ids.

    Process ids are this host's: the directory must not be shared across hosts or PID namespaces.
    Two scrapes at once, or a process's own exit hook, may remove a file first: that is no error.
    """
    dead = set()
    for name in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        match = _LIVE_FILE.search(name)
        if match and not _alive(int(match[1])):
            dead.add(int(match[1]))
            with contextlib.suppress(FileNotFoundError):
                os.remove(name)
    return sorted(dead)


def render() -> bytes:
    """The exposition text: every process's files in multiprocess mode, else this process's."""
    path = metrics.multiprocess_dir()
    if path is None:
        return generate_latest(REGISTRY)
    forget_dead_processes(path)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path)
    return generate_latest(registry)


@require_safe
async def metrics_endpoint(request: HttpRequest) -> HttpResponse:
    """``GET /metrics``: 200 with the exposition text (``text/plain; version=0.0.4``), 403 to an
    address outside ``SESSIONS_METRICS_NETWORKS``."""
    if not allowed(request.META.get("REMOTE_ADDR")):
        return HttpResponse("Forbidden\n", status=403, content_type="text/plain")
    metrics.flush()  # this process's latest counts; the others flush every FLUSH_INTERVAL
    body = await asyncio.to_thread(render)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
