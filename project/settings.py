"""Django settings, read from the environment with embedded defaults.

A fresh checkout runs with no other service: SQLite in the project folder and the in-memory
channel layer. Production sets ``DATABASE_URL`` (PostgreSQL) and ``REDIS_URL`` (channels_redis).
Every setting is listed, with its default, in the README's "Settings" table.
"""

import os
import secrets
import warnings
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    """Read a boolean: 1/true/yes/on and 0/false/no/off (any case); ``default`` when unset."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1 or 0)")


def env_number(
    name: str, default: float, cast: type = int, *, minimum: float = 0, maximum: float | None = None
) -> float:
    """Read a number with ``cast`` (int or float); ``default`` when unset.

    Raises ImproperlyConfigured when the value is not a number or is outside [minimum, maximum].
    """
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = cast(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a {cast.__name__}") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise ImproperlyConfigured(f"{name}={raw!r} must be {bound}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    """Read a comma-separated list; ``default`` when unset."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def development_secret_key(path: Path) -> str:
    """A random key kept in ``path`` (mode 600, made on first use) for development checkouts.

    Never a key written in the code: a public key would let anyone forge access tokens (SimpleJWT
    signs them with SECRET_KEY) on a server started with the defaults.
    """
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(50))
    return path.read_text().strip()


DEBUG = env_bool("DJANGO_DEBUG", True)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY is required when DJANGO_DEBUG=0")
    SECRET_KEY = development_secret_key(BASE_DIR / ".secret-key")

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "channels",
    "sessions_app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
ASGI_APPLICATION = "project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: DATABASE_URL (dj-database-url syntax), default SQLite in the project folder.
# Persistent connections with health checks, so a connection the server dropped (PostgreSQL
# restarted, pg_terminate_backend) is replaced on the next request instead of failing it.
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=env_number("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite: wait on a locked database instead of failing at once; WAL lets readers go on while
    # one connection writes. IMMEDIATE transactions take the write lock at BEGIN: a deferred one
    # that reads and then writes fails at once ("database is locked", no busy wait) when another
    # connection wrote in between (Django 5.1+ "init_command" / "transaction_mode" options).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Channel layer: Redis when REDIS_URL is set (CHANNEL_LAYER_BACKEND picks the core or the pub/sub
# layer of channels_redis), otherwise the in-memory layer, which only reaches one process.
# CHANNEL_LAYER_CAPACITY bounds the messages waiting on one channel (core and in-memory layers; the
# pub/sub layer has no bound). Each process reads all its pushes from one channel
# (sessions_app.fanout), so this is the backlog a process can absorb during a stall.
REDIS_URL = os.environ.get("REDIS_URL", "")
CHANNEL_LAYER_CAPACITY = env_number("CHANNEL_LAYER_CAPACITY", 1000, minimum=1)
if REDIS_URL:
    _layer_backend = os.environ.get("CHANNEL_LAYER_BACKEND", "channels_redis.core.RedisChannelLayer")
    _layer_config: dict[str, object] = {"hosts": [REDIS_URL]}
    if _layer_backend == "channels_redis.core.RedisChannelLayer":
        # group_expiry: a process that died without leaving its groups (SIGKILL, or any stop: the
        # reader cannot leave them at interpreter exit) stays a member this long. Live processes
        # add themselves again every GROUP_REFRESH (an hour, sessions_app.process): two hours
        # instead of channels_redis' default day.
        _layer_config.update({"capacity": CHANNEL_LAYER_CAPACITY, "group_expiry": 7200})
    CHANNEL_LAYERS = {"default": {"BACKEND": _layer_backend, "CONFIG": _layer_config}}
else:
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": CHANNEL_LAYER_CAPACITY}}
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
# WhiteNoise serves static files from the same daphne process, DEBUG or not. Without a
# collectstatic run it finds them through the staticfiles finders (WHITENOISE_USE_FINDERS).
WHITENOISE_USE_FINDERS = True
# Without collectstatic, STATIC_ROOT does not exist: the finders serve the files, nothing is missing.
warnings.filterwarnings("ignore", message="No directory at: ")
WHITENOISE_AUTOREFRESH = DEBUG

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework_simplejwt.authentication.JWTAuthentication"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(seconds=env_number("JWT_ACCESS_LIFETIME", 300)),
    "REFRESH_TOKEN_LIFETIME": timedelta(seconds=env_number("JWT_REFRESH_LIFETIME", 86400)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": False,
}

# The session protocol (see docs/protocol.md). Each is overridable by the environment variable of
# the same name. Units: seconds, bytes, messages, counts.
SESSIONS_AUTH_TIMEOUT = env_number("SESSIONS_AUTH_TIMEOUT", 10.0, float)
# Seconds a thread may hold the GIL while another waits for it (Python's default: 0.005). The
# ORM runs in one thread beside the event loop; each database call releases the GIL and must win
# it back from a busy loop, which with the default can cost up to 5 ms per call (the "convoy
# effect", CPython issue bpo-7946). Applied by project.asgi when the server loads the application.
SESSIONS_GIL_SWITCH_INTERVAL = env_number("SESSIONS_GIL_SWITCH_INTERVAL", 0.001, float, minimum=0.0001, maximum=0.1)
# Pushes held for a connection while it handles a request; beyond this they are dropped and the
# client, seeing the version gap, re-joins with since (docs/protocol.md).
SESSIONS_PUSH_BUFFER = env_number("SESSIONS_PUSH_BUFFER", 100, minimum=1)
SESSIONS_TOKEN_EXPIRY_WARNING = env_number("SESSIONS_TOKEN_EXPIRY_WARNING", 30.0, float)
SESSIONS_MAX_MESSAGE_BYTES = env_number("SESSIONS_MAX_MESSAGE_BYTES", 65536)
SESSIONS_RATE_LIMIT = env_number("SESSIONS_RATE_LIMIT", 30.0, float)
SESSIONS_RATE_BURST = env_number("SESSIONS_RATE_BURST", 60)
SESSIONS_MAX_CONNECTIONS_PER_USER = env_number("SESSIONS_MAX_CONNECTIONS_PER_USER", 20)
SESSIONS_MAX_SESSIONS_PER_USER = env_number("SESSIONS_MAX_SESSIONS_PER_USER", 500)
SESSIONS_MAX_DOCUMENT_BYTES = env_number("SESSIONS_MAX_DOCUMENT_BYTES", 1048576)
SESSIONS_CHANGE_LOG_KEEP = env_number("SESSIONS_CHANGE_LOG_KEEP", 1000)
SESSIONS_PRESENCE_HEARTBEAT = env_number("SESSIONS_PRESENCE_HEARTBEAT", 10.0, float)
SESSIONS_PRESENCE_TTL = env_number("SESSIONS_PRESENCE_TTL", 30.0, float)
SESSIONS_ALLOWED_ORIGINS = env_list("SESSIONS_ALLOWED_ORIGINS", [])

LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {"sessions_app": {"level": LOG_LEVEL}},
}
