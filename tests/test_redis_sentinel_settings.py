"""REDIS_SENTINELS and its companions (project/redis_hosts.py): the channel layer's host entry for
Redis Sentinel, in channels_redis' form, and clear start-up errors for a bad combination. The
failover itself, with real sentinels: tests/test_redis_sentinel_failover.py."""

from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from tests.test_settings import load

SENTINEL_VARIABLES = (
    "REDIS_URL",
    "REDIS_SENTINELS",
    "REDIS_SENTINEL_MASTER",
    "REDIS_SENTINEL_DB",
    "REDIS_PASSWORD",
    "REDIS_SENTINEL_PASSWORD",
)


@pytest.fixture(autouse=True)
def no_redis_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SENTINEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def host_of(loaded: dict[str, Any]) -> Any:
    (host,) = loaded["CHANNEL_LAYERS"]["default"]["CONFIG"]["inner"]["CONFIG"]["hosts"]
    return host


@pytest.mark.parametrize(
    "backend", ["channels_redis.core.RedisChannelLayer", "channels_redis.pubsub.RedisPubSubChannelLayer"]
)
def test_sentinels_give_channels_redis_a_sentinel_host_entry(monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    loaded = load(
        monkeypatch,
        CHANNEL_LAYER_BACKEND=backend,
        REDIS_SENTINELS="s1.test:26379, [::1]:26380,10.0.0.3:26381,",
        REDIS_SENTINEL_MASTER="mymaster",
        REDIS_SENTINEL_DB="4",
        REDIS_PASSWORD="primary-secret",
        REDIS_SENTINEL_PASSWORD="sentinel-secret",
    )
    assert loaded["CHANNEL_LAYERS"]["default"]["CONFIG"]["inner"]["BACKEND"] == backend
    assert host_of(loaded) == {
        "sentinels": [("s1.test", 26379), ("::1", 26380), ("10.0.0.3", 26381)],
        "master_name": "mymaster",
        "db": 4,
        "password": "primary-secret",
        "sentinel_kwargs": {"socket_timeout": 2.0, "socket_connect_timeout": 2.0, "password": "sentinel-secret"},
        "socket_connect_timeout": 5.0,
        "socket_timeout": 10.0,
        "socket_keepalive": True,
    }


def test_without_passwords_none_is_passed(monkeypatch: pytest.MonkeyPatch) -> None:
    host = host_of(load(monkeypatch, REDIS_SENTINELS="127.0.0.1:26379", REDIS_SENTINEL_MASTER="m"))
    assert "password" not in host and "password" not in host["sentinel_kwargs"]
    assert host["db"] == 0


def test_the_host_entry_makes_a_sentinel_pool_in_channels_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    from channels_redis.core import RedisChannelLayer
    from redis.asyncio.sentinel import SentinelConnectionPool

    host = host_of(load(monkeypatch, REDIS_SENTINELS="127.0.0.1:26379", REDIS_SENTINEL_MASTER="m"))
    pool = RedisChannelLayer(hosts=[host]).create_pool(0)
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "m"
    assert pool.connection_kwargs["socket_timeout"] == 10.0
    assert pool.sentinel_manager.sentinels[0].connection_pool.connection_kwargs["socket_timeout"] == 2.0


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        (
            {"REDIS_URL": "redis://r.test/0", "REDIS_SENTINELS": "s.test:26379"},
            "set REDIS_URL or REDIS_SENTINELS, not both",
        ),
        ({"REDIS_SENTINELS": "s.test:26379"}, "REDIS_SENTINELS needs REDIS_SENTINEL_MASTER"),
        ({"REDIS_SENTINELS": " , ", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS names no sentinel"),
        ({"REDIS_SENTINELS": "s.test", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS: 's.test' is not host:port"),
        ({"REDIS_SENTINELS": "s.test:0", "REDIS_SENTINEL_MASTER": "m"}, "'s.test:0' is not host:port"),
        ({"REDIS_SENTINELS": "s.test:99999", "REDIS_SENTINEL_MASTER": "m"}, "'s.test:99999' is not host:port"),
        ({"REDIS_SENTINELS": ":26379", "REDIS_SENTINEL_MASTER": "m"}, "':26379' is not host:port"),
        ({"REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINEL_MASTER need REDIS_SENTINELS"),
        (
            {"REDIS_URL": "redis://r.test/0", "REDIS_PASSWORD": "pw"},
            r"REDIS_PASSWORD need REDIS_SENTINELS \(with REDIS_URL, the password goes in the URL\)",
        ),
        (
            {"REDIS_SENTINELS": "s.test:26379", "REDIS_SENTINEL_MASTER": "m", "REDIS_SENTINEL_DB": "-1"},
            "REDIS_SENTINEL_DB='-1'",
        ),
    ],
)
def test_bad_combinations_fail_at_start_up_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], message: str
) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        load(monkeypatch, **variables)


def test_errors_never_show_a_password(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ImproperlyConfigured) as raised:
        load(monkeypatch, REDIS_PASSWORD="hunter2-primary", REDIS_SENTINEL_PASSWORD="hunter2-sentinel")
    assert "hunter2" not in str(raised.value)
    assert "REDIS_SENTINEL_PASSWORD, REDIS_PASSWORD need REDIS_SENTINELS" in str(raised.value)
