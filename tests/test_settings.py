"""project/settings.py reads the environment (environs): bad values fail at start-up with
ImproperlyConfigured naming the variable. Each test runs a fresh copy of the settings module.
"""

import runpy
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

SETTINGS = Path(__file__).resolve().parents[1] / "project" / "settings.py"


def load(monkeypatch: pytest.MonkeyPatch, **variables: str) -> dict[str, Any]:
    """The names ``project/settings.py`` defines when run with ``variables`` in the environment."""
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(SETTINGS))


def test_numbers_are_read_as_ints_and_floats(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = load(monkeypatch, DATABASE_CONN_MAX_AGE="12", SESSIONS_GIL_SWITCH_INTERVAL="0.002")
    assert loaded["DATABASES"]["default"]["CONN_MAX_AGE"] == 12
    assert loaded["SESSIONS_GIL_SWITCH_INTERVAL"] == 0.002


def test_postgresql_gets_a_bounded_connection_pool_instead_of_persistent_connections(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Issue 11, item 8: persistent connections under ASGI stay open with each request's thread.
    url = "postgres://postgres@127.0.0.1:5432/interactive"
    loaded = load(monkeypatch, DATABASE_URL=url, DATABASE_POOL_MAX_SIZE="7", DATABASE_POOL_TIMEOUT="2.5")
    database = loaded["DATABASES"]["default"]
    assert database["CONN_MAX_AGE"] == 0  # Django's pool requires it
    assert database["CONN_HEALTH_CHECKS"] is True
    assert database["OPTIONS"]["pool"] == {"min_size": 1, "max_size": 7, "timeout": 2.5}
    monkeypatch.delenv("DATABASE_POOL_MAX_SIZE")
    monkeypatch.delenv("DATABASE_POOL_TIMEOUT")
    assert load(monkeypatch)["DATABASES"]["default"]["OPTIONS"]["pool"] == {
        "min_size": 1,
        "max_size": 10,
        "timeout": 10.0,
    }
    with pytest.raises(ImproperlyConfigured, match="DATABASE_POOL_MAX_SIZE='0'"):
        load(monkeypatch, DATABASE_POOL_MAX_SIZE="0")


def test_sqlite_keeps_its_persistent_connection_and_no_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = load(monkeypatch, DATABASE_URL="sqlite:///x.sqlite3", DATABASE_POOL_MAX_SIZE="7")
    assert "pool" not in loaded["DATABASES"]["default"]["OPTIONS"]


def test_unset_variables_take_their_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_CONN_MAX_AGE", "JWT_ACCESS_LIFETIME", "CHANNEL_LAYER_CAPACITY", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    loaded = load(monkeypatch)
    assert loaded["DATABASES"]["default"]["CONN_MAX_AGE"] == 60
    assert loaded["SIMPLE_JWT"]["ACCESS_TOKEN_LIFETIME"].total_seconds() == 300
    assert loaded["CHANNEL_LAYERS"]["default"]["BACKEND"] == "sessions_app.layers.FanoutChannelLayer"
    assert loaded["CHANNEL_LAYERS"]["default"]["CONFIG"]["inner"] == {
        "BACKEND": "channels.layers.InMemoryChannelLayer",
        "CONFIG": {"capacity": 1000},
    }


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("true", True), ("on", True), ("0", False), ("no", False)])
def test_booleans_are_read_from_1_0_and_their_words(monkeypatch: pytest.MonkeyPatch, raw: str, expected: bool) -> None:
    assert load(monkeypatch, DJANGO_DEBUG=raw, DJANGO_SECRET_KEY="k")["DEBUG"] is expected


def test_lists_are_comma_separated_stripped_and_without_empty_items(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = load(monkeypatch, DJANGO_ALLOWED_HOSTS="a.test, b.test,,", SESSIONS_ALLOWED_ORIGINS="")
    assert loaded["ALLOWED_HOSTS"] == ["a.test", "b.test"]
    assert loaded["SESSIONS_ALLOWED_ORIGINS"] == []


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("SESSIONS_MAX_MESSAGE_BYTES", "x", "Not a valid integer"),
        ("SESSIONS_RATE_LIMIT", "nan", "not permitted"),
        ("DJANGO_DEBUG", "maybe", "Not a valid boolean"),
        ("DATABASE_CONN_MAX_AGE", "-1", "greater than or equal to 0"),
        ("JWT_REFRESH_LIFETIME", "-1", "greater than or equal to 0"),
        ("CHANNEL_LAYER_CAPACITY", "0", "greater than or equal to 1"),  # 0 would drop every push
        ("SESSIONS_PUSH_BUFFER", "0", "greater than or equal to 1"),
        ("SESSIONS_GIL_SWITCH_INTERVAL", "0", "greater than or equal to 0.0001 and less than or equal to 0.1"),
        ("SESSIONS_GIL_SWITCH_INTERVAL", "1e9", "greater than or equal to 0.0001 and less than or equal to 0.1"),
    ],
)
def test_values_that_are_not_numbers_or_outside_their_bounds_are_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, raw: str, message: str
) -> None:
    with pytest.raises(ImproperlyConfigured, match=f"{name}={raw!r}: .*{message}"):
        load(monkeypatch, **{name: raw})


def test_every_bad_variable_is_named_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ImproperlyConfigured) as raised:
        load(monkeypatch, SESSIONS_RATE_BURST="-1", JWT_ACCESS_LIFETIME="soon")
    assert "SESSIONS_RATE_BURST='-1'" in str(raised.value) and "JWT_ACCESS_LIFETIME='soon'" in str(raised.value)


def test_a_production_server_needs_a_secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DJANGO_SECRET_KEY", raising=False)
    with pytest.raises(ImproperlyConfigured, match="DJANGO_SECRET_KEY is required when DJANGO_DEBUG=0"):
        load(monkeypatch, DJANGO_DEBUG="0")


@pytest.mark.parametrize(
    ("backend", "config"),
    [
        ("channels_redis.core.RedisChannelLayer", {"capacity": 7, "group_expiry": 7200}),
        ("channels_redis.pubsub.RedisPubSubChannelLayer", {}),
    ],
)
def test_redis_url_picks_the_redis_layer_of_channel_layer_backend(
    monkeypatch: pytest.MonkeyPatch, backend: str, config: dict[str, Any]
) -> None:
    url = "redis://r.test:6379/0"
    loaded = load(monkeypatch, REDIS_URL=url, CHANNEL_LAYER_BACKEND=backend, CHANNEL_LAYER_CAPACITY="7")
    inner = {"BACKEND": backend, "CONFIG": {"hosts": [url], **config}}
    assert loaded["CHANNEL_LAYERS"] == {
        "default": {"BACKEND": "sessions_app.layers.FanoutChannelLayer", "CONFIG": {"inner": inner}}
    }
    stock = load(
        monkeypatch, REDIS_URL=url, CHANNEL_LAYER_BACKEND=backend, CHANNEL_LAYER_CAPACITY="7", CHANNEL_LAYER_FANOUT="0"
    )
    assert stock["CHANNEL_LAYERS"] == {"default": inner}


def test_https_turns_on_the_redirect_secure_cookies_and_hsts(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = load(monkeypatch)
    assert (plain["SECURE_SSL_REDIRECT"], plain["SESSION_COOKIE_SECURE"], plain["SECURE_HSTS_SECONDS"]) == (
        False,
        False,
        0,
    )
    assert "SECURE_PROXY_SSL_HEADER" not in plain
    https = load(monkeypatch, DJANGO_HTTPS="1", DJANGO_PROXY_SSL_HEADER="1", DJANGO_HSTS_SECONDS="600")
    assert https["SECURE_SSL_REDIRECT"] and https["SESSION_COOKIE_SECURE"] and https["CSRF_COOKIE_SECURE"]
    assert https["SECURE_HSTS_SECONDS"] == 600
    assert https["SECURE_PROXY_SSL_HEADER"] == ("HTTP_X_FORWARDED_PROTO", "https")
    assert https["SECURE_REDIRECT_EXEMPT"] == [r"^healthz$", r"^metrics$"]
