"""The Redis host entry of the channel layer's ``hosts``: a URL, or a Redis Sentinel set.

channels_redis takes a URL (``"redis://host:6379/0"``) or, for Sentinel, a dict
``{"sentinels": [(host, port), ...], "master_name": name, **connection kwargs}``, with
``sentinel_kwargs`` for the connections to the sentinels themselves (channels_redis'
``utils.create_pool``, which makes redis-py's ``SentinelConnectionPool``: every new connection asks
the sentinels for the current primary, and a connection to a primary demoted since is dropped on
its ``READONLY`` error). project.settings builds it from the environment with ``layer_host``;
the README's "Settings" table lists the variables.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured

# Seconds. To the sentinels: a connection and each reply (redis-py's Sentinel asks them one after
# another, so a dead or unreachable sentinel delays discovery by this much, not by TCP's minutes).
SENTINEL_TIMEOUT = 2.0
# To the primary: connecting, and each reply. Above channels_redis' BZPOPMIN timeout (5 s,
# ``RedisChannelLayer.brpop_timeout``), so a blocking read is never cut short, yet a primary that
# stopped answering without closing its sockets (a host gone, a network split) is given up in
# seconds and the next connection goes to the primary the sentinels name.
PRIMARY_CONNECT_TIMEOUT = 5.0
PRIMARY_TIMEOUT = 10.0


def parse_sentinels(value: str) -> list[tuple[str, int]]:
    """``"host:port,host:port"`` (``[::1]:26379`` for IPv6) as ``[(host, port), ...]``.

    Raises ImproperlyConfigured naming REDIS_SENTINELS and the bad item.
    """
    found = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        host, colon, port = item.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ImproperlyConfigured(f"REDIS_SENTINELS: {item!r} is not host:port (port 1 to 65535)")
        found.append((host, int(port)))
    if not found:
        raise ImproperlyConfigured("REDIS_SENTINELS names no sentinel (host:port,host:port)")
    return found


def layer_host(
    *, url: str, sentinels: str, master: str, db: int, password: str, sentinel_password: str
) -> str | dict[str, Any] | None:
    """The ``hosts`` entry for channels_redis: ``url`` itself, a Sentinel dict when ``sentinels`` is
    set, or None when neither is (the in-memory layer).

    ``master``: the name the sentinels monitor the primary by; ``db``: its database number;
    ``password``: the primary's and replicas' (``requirepass``); ``sentinel_password``: the
    sentinels' own. Raises ImproperlyConfigured (never showing a password) when both a URL and
    sentinels are given, when sentinels come without a master name, or when Sentinel-only
    variables come without sentinels.
    """
    if url and sentinels:
        raise ImproperlyConfigured("set REDIS_URL or REDIS_SENTINELS, not both")
    if not sentinels:
        extra = [
            name
            for name, value in (
                ("REDIS_SENTINEL_MASTER", master),
                ("REDIS_SENTINEL_PASSWORD", sentinel_password),
                ("REDIS_PASSWORD", password),
            )
            if value
        ]
        if extra:
            hint = " (with REDIS_URL, the password goes in the URL)" if url else ""
            raise ImproperlyConfigured(f"{', '.join(extra)} need REDIS_SENTINELS{hint}")
        return url or None
    if not master:
        raise ImproperlyConfigured("REDIS_SENTINELS needs REDIS_SENTINEL_MASTER (the name the sentinels monitor)")
    sentinel_kwargs: dict[str, Any] = {"socket_timeout": SENTINEL_TIMEOUT, "socket_connect_timeout": SENTINEL_TIMEOUT}
    if sentinel_password:
        sentinel_kwargs["password"] = sentinel_password
    host: dict[str, Any] = {
        "sentinels": parse_sentinels(sentinels),
        "master_name": master,
        "sentinel_kwargs": sentinel_kwargs,
        "db": db,
        "socket_connect_timeout": PRIMARY_CONNECT_TIMEOUT,
        "socket_timeout": PRIMARY_TIMEOUT,
        "socket_keepalive": True,
    }
    if password:
        host["password"] = password
    return host
