"""Django settings, read from the environment with embedded defaults.

A fresh checkout runs with no other service: SQLite in the project folder and the in-memory
channel layer. Production sets ``DATABASE_URL`` (PostgreSQL) and ``REDIS_URL`` (channels_redis).
Every setting is listed, with its default, in the README's "Settings" table.
"""

import os
import secrets
import warnings
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from environs import Env, EnvValidationError
from marshmallow.validate import OneOf, Range

from project.redis_hosts import layer_host
from sessions_app.conf import BOUNDS, DEFAULTS

BASE_DIR = Path(__file__).resolve().parent.parent


def development_secret_key(path: Path) -> str:
    """A random key kept in ``path`` (mode 600, made on first use) for development checkouts.

    Never a key written in the code: a public key would let anyone forge access tokens (SimpleJWT
    signs them with SECRET_KEY) on a server started with the defaults.
    """
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(50))
    return path.read_text().strip()


def items(values: list[str]) -> list[str]:
    """The items of a comma-separated list, stripped, without empty ones (``"a, b,"``: a and b)."""
    return [item.strip() for item in values if item.strip()]


# --- The environment ------------------------------------------------------------------------------
# Every variable is read here, in the order of the README's "Settings" table, and all of them are
# checked (env.seal) before any is used: until then a bad one reads as None.
# environs rather than django-environ: environs validates as it casts (marshmallow's Range gives the
# bounds below), and with eager=False it collects every bad variable and reports them together when
# sealed; django-environ only casts, so the bounds would be hand-written checks again. environs does
# not read a .env file unless asked (env.read_env()); nothing here asks.
env = Env(eager=False)


def sessions_setting(parse: Callable[..., Any], name: str) -> Any:
    """``SESSIONS_<name>`` read with ``parse`` (env.int, env.float), with the default and bounds
    the app declares in ``sessions_app.conf`` (which checks the value again when it loads it).
    """
    low, high = BOUNDS[name]
    return parse(f"SESSIONS_{name}", DEFAULTS[name], validate=Range(min=low, max=high))


SECRET_KEY = env.str("DJANGO_SECRET_KEY", "")
# On by default for a fresh checkout, but honoured for loopback clients only: with DEBUG on, every
# other client gets 403 (sessions_app.security.debug_loopback_only), never a debug page.
DEBUG = env.bool("DJANGO_DEBUG", True)
ALLOWED_HOSTS = items(env.list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"]))
# Served over HTTPS only (directly or behind a proxy that terminates TLS): see "HTTPS" below.
_https = env.bool("DJANGO_HTTPS", False)
_proxy_ssl_header = env.bool("DJANGO_PROXY_SSL_HEADER", False)
_hsts_seconds = env.int("DJANGO_HSTS_SECONDS", 31536000, validate=Range(min=0))
_hsts_include_subdomains = env.bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", False)
_hsts_preload = env.bool("DJANGO_HSTS_PRELOAD", False)
_database_url = env.str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
_database_conn_max_age = env.int("DATABASE_CONN_MAX_AGE", 60, validate=Range(min=0))
_database_pool_max_size = env.int("DATABASE_POOL_MAX_SIZE", 10, validate=Range(min=1))
_database_pool_timeout = env.float("DATABASE_POOL_TIMEOUT", 10.0, validate=Range(min=0))
REDIS_URL = env.str("REDIS_URL", "")
_redis_sentinels = env.str("REDIS_SENTINELS", "")
_redis_sentinel_master = env.str("REDIS_SENTINEL_MASTER", "")
_redis_sentinel_db = env.int("REDIS_SENTINEL_DB", 0, validate=Range(min=0))
_redis_password = env.str("REDIS_PASSWORD", "")
_redis_sentinel_password = env.str("REDIS_SENTINEL_PASSWORD", "")
_layer_backend = env.str("CHANNEL_LAYER_BACKEND", "channels_redis.core.RedisChannelLayer")
CHANNEL_LAYER_CAPACITY = env.int("CHANNEL_LAYER_CAPACITY", 1000, validate=Range(min=1))
_layer_fanout = env.bool("CHANNEL_LAYER_FANOUT", True)
# On daphne, a push to many sockets is framed once (autobahn's prepared messages,
# sessions_app/sockets.py TwistedBuffer.send_shared); 0: every send through daphne (stock Channels).
DAPHNE_PREPARED_PUSHES = env.bool("DAPHNE_PREPARED_PUSHES", True)
# See GIL_SWITCH_INTERVAL in sessions_app/conf.py; applied by project.asgi when the server loads.
SESSIONS_GIL_SWITCH_INTERVAL = sessions_setting(env.float, "GIL_SWITCH_INTERVAL")
_jwt_access_lifetime = env.int("JWT_ACCESS_LIFETIME", 300, validate=Range(min=0))
_jwt_refresh_lifetime = env.int("JWT_REFRESH_LIFETIME", 86400, validate=Range(min=0))
# The session protocol (docs/protocol.md); defaults, bounds and meaning in sessions_app/conf.py.
# Units: seconds, bytes, messages, counts.
SESSIONS_AUTH_TIMEOUT = sessions_setting(env.float, "AUTH_TIMEOUT")
SESSIONS_PUSH_BUFFER = sessions_setting(env.int, "PUSH_BUFFER")
SESSIONS_TOKEN_EXPIRY_WARNING = sessions_setting(env.float, "TOKEN_EXPIRY_WARNING")
SESSIONS_MAX_MESSAGE_BYTES = sessions_setting(env.int, "MAX_MESSAGE_BYTES")
SESSIONS_MAX_SEND_BUFFER = sessions_setting(env.int, "MAX_SEND_BUFFER")
SESSIONS_RATE_LIMIT = sessions_setting(env.float, "RATE_LIMIT")
SESSIONS_RATE_BURST = sessions_setting(env.int, "RATE_BURST")
SESSIONS_MAX_CONNECTIONS_PER_USER = sessions_setting(env.int, "MAX_CONNECTIONS_PER_USER")
SESSIONS_MAX_SESSIONS_PER_USER = sessions_setting(env.int, "MAX_SESSIONS_PER_USER")
SESSIONS_MAX_MEMBERS_PER_SESSION = sessions_setting(env.int, "MAX_MEMBERS_PER_SESSION")
SESSIONS_MAX_DOCUMENT_BYTES = sessions_setting(env.int, "MAX_DOCUMENT_BYTES")
SESSIONS_CHANGE_LOG_KEEP = sessions_setting(env.int, "CHANGE_LOG_KEEP")
SESSIONS_CHANGE_LOG_BYTES = sessions_setting(env.int, "CHANGE_LOG_BYTES")
SESSIONS_REVISIONS_KEEP = sessions_setting(env.int, "REVISIONS_KEEP")
SESSIONS_REVISION_BYTES_PER_USER = sessions_setting(env.int, "REVISION_BYTES_PER_USER")
SESSIONS_PATCH_WORK_PER_BYTE = sessions_setting(env.int, "PATCH_WORK_PER_BYTE")
SESSIONS_PATCH_WORK_MIN = sessions_setting(env.int, "PATCH_WORK_MIN")
SESSIONS_REBASE_MAX_CHANGES = sessions_setting(env.int, "REBASE_MAX_CHANGES")
SESSIONS_REBASE_MAX_STEPS = sessions_setting(env.int, "REBASE_MAX_STEPS")
SESSIONS_PATCH_WORKERS = sessions_setting(env.int, "PATCH_WORKERS")
SESSIONS_PATCH_INLINE_BYTES = sessions_setting(env.int, "PATCH_INLINE_BYTES")
SESSIONS_PRESENCE_HEARTBEAT = sessions_setting(env.float, "PRESENCE_HEARTBEAT")
SESSIONS_PRESENCE_TTL = sessions_setting(env.float, "PRESENCE_TTL")
SESSIONS_DRAIN_TIMEOUT = sessions_setting(env.float, "DRAIN_TIMEOUT")
SESSIONS_LOGIN_FAILURE_LIMIT = sessions_setting(env.int, "LOGIN_FAILURE_LIMIT")
SESSIONS_LOGIN_LOCKOUT = sessions_setting(env.float, "LOGIN_LOCKOUT")
SESSIONS_LOGIN_MAX_AGE = sessions_setting(env.int, "LOGIN_MAX_AGE")
SESSIONS_OTP_TICKET_LIFETIME = sessions_setting(env.float, "OTP_TICKET_LIFETIME")
SESSIONS_OTP_RECOVERY_CODES = sessions_setting(env.int, "OTP_RECOVERY_CODES")
SESSIONS_OTP_ENROL_SIGN_IN_AGE = sessions_setting(env.int, "OTP_ENROL_SIGN_IN_AGE")
SESSIONS_MAGIC_LINK_MAX_AGE = sessions_setting(env.int, "MAGIC_LINK_MAX_AGE")
SESSIONS_MAGIC_LINK_LIMIT = sessions_setting(env.int, "MAGIC_LINK_LIMIT")
SESSIONS_MAGIC_LINK_WINDOW = sessions_setting(env.float, "MAGIC_LINK_WINDOW")
SESSIONS_MAGIC_LINK_MAIL_QUEUE = sessions_setting(env.int, "MAGIC_LINK_MAIL_QUEUE")
SESSIONS_ALLOWED_ORIGINS = items(env.list("SESSIONS_ALLOWED_ORIGINS", list(DEFAULTS["ALLOWED_ORIGINS"])))
SESSIONS_METRICS_NETWORKS = items(env.list("SESSIONS_METRICS_NETWORKS", list(DEFAULTS["METRICS_NETWORKS"])))
# Read by prometheus_client itself, from the environment, when sessions_app.metrics is imported;
# here only so that it is listed and checked (sessions_app.metrics, docs/metrics.md).
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", "")
LOG_LEVEL = env.str("LOG_LEVEL", "INFO")
# text: one plain line per record; json: one JSON object per line (python-json-logger).
LOG_FORMAT = env.str("LOG_FORMAT", "text", validate=OneOf(["text", "json"]))
OTP_TOTP_ISSUER = env.str("OTP_TOTP_ISSUER", "Interactive sessions")  # the authenticator app's label
OTP_TOTP_THROTTLE_FACTOR = env.int("OTP_TOTP_THROTTLE_FACTOR", 1, validate=Range(min=0))
OTP_STATIC_THROTTLE_FACTOR = env.int("OTP_STATIC_THROTTLE_FACTOR", 1, validate=Range(min=0))
# Mail (the sign-in links, sessions_app/mailer.py): Django's email framework. By default the console
# backend in development (DJANGO_DEBUG on: the message is printed) and SMTP otherwise, with the
# server from EMAIL_HOST and the rest; the file backend (EMAIL_FILE_PATH) suits tests.
_email_backend = env.str("EMAIL_BACKEND", "")
_email_file_path = env.str("EMAIL_FILE_PATH", "")
EMAIL_HOST = env.str("EMAIL_HOST", "localhost")
EMAIL_PORT = env.int("EMAIL_PORT", 25, validate=Range(min=1, max=65535))
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env.bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env.float("EMAIL_TIMEOUT", 10.0, validate=Range(min=0.1))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", "webmaster@localhost")

try:
    env.seal()
except EnvValidationError as error:
    # One message naming every bad variable and its value, as ImproperlyConfigured (README,
    # "Settings"). Only numbers and booleans can fail, so no secret is ever shown.
    problems = "; ".join(
        f"{name}={os.environ.get(name)!r}: {' '.join(messages).rstrip('.')}"
        for name, messages in error.error_messages.items()
    )
    raise ImproperlyConfigured(f"Invalid environment variables: {problems}") from None

if PROMETHEUS_MULTIPROC_DIR and not Path(PROMETHEUS_MULTIPROC_DIR).is_dir():
    raise ImproperlyConfigured(f"PROMETHEUS_MULTIPROC_DIR={PROMETHEUS_MULTIPROC_DIR!r} is not a directory")

if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("EMAIL_USE_TLS and EMAIL_USE_SSL are exclusive: set one of them")
EMAIL_BACKEND = _email_backend or (
    "django.core.mail.backends.console.EmailBackend" if DEBUG else "django.core.mail.backends.smtp.EmailBackend"
)
if _email_file_path:
    EMAIL_FILE_PATH = _email_file_path

if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY is required when DJANGO_DEBUG=0")
    SECRET_KEY = development_secret_key(BASE_DIR / ".secret-key")

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
    "axes",
    "csp",
    # The API's contract: OpenAPI for the REST endpoints, and the serializer mapping of the
    # socket's AsyncAPI document (sessions_app/asyncapi.py); the sidecar serves Swagger UI's files.
    "drf_spectacular",
    "drf_spectacular_sidecar",
    # Optional two-factor sign-in (sessions_app/second_factor.py): TOTP devices and recovery codes.
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "sessions_app",
]

MIDDLEWARE = [
    # First: with DEBUG on, nothing else runs for a client that is not on loopback.
    "sessions_app.security.debug_loopback_only",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns the admin login's lockout into its 429 page.
    "axes.middleware.AxesMiddleware",
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
# Health-checked connections, so a connection the server dropped (PostgreSQL restarted,
# pg_terminate_backend) is replaced on the next request instead of failing it: persistent ones
# (DATABASE_CONN_MAX_AGE) on SQLite, a bounded pool on PostgreSQL (below).
DATABASES = {
    "default": dj_database_url.parse(
        _database_url,
        conn_max_age=_database_conn_max_age,
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # PostgreSQL: Django's own connection pool (Django 5.1+, psycopg_pool), at most
    # DATABASE_POOL_MAX_SIZE connections per process, whatever the number of threads asking. Under
    # ASGI each HTTP request runs its database work in a thread of its own (asgiref's
    # ThreadSensitiveContext), and a persistent connection (CONN_MAX_AGE > 0) stays open with the
    # thread's storage after the request: 150 concurrent requests left 91 idle backends held by
    # one daphne (django/daphne#332, Django ticket #33497). With the pool, a thread takes a
    # connection for one request or one database hop (CONN_MAX_AGE must be 0) and gives it back;
    # beyond the maximum a thread waits up to DATABASE_POOL_TIMEOUT seconds for one (then
    # OperationalError: `unavailable` on a socket). The pool health-checks a connection before
    # handing it out (CONN_HEALTH_CHECKS), as the persistent connections were.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": _database_pool_max_size,
        "timeout": _database_pool_timeout,
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
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

# HTTPS (DJANGO_HTTPS=1): HTTP requests are redirected to HTTPS, except the load balancer's health
# check and the Prometheus scrape (/healthz, /metrics: often over plain HTTP inside the network);
# session and CSRF cookies are sent over HTTPS only; Strict-Transport-Security for
# DJANGO_HSTS_SECONDS. Behind a proxy that terminates TLS, DJANGO_PROXY_SSL_HEADER=1 trusts its
# X-Forwarded-Proto (the proxy must set it and drop a client's own). `manage.py check --deploy` is
# clean with the settings the README's "Production settings" list (tests/test_deploy.py).
SECURE_SSL_REDIRECT = _https
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = _https
SECURE_HSTS_SECONDS = _hsts_seconds if _https else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = _hsts_include_subdomains
SECURE_HSTS_PRELOAD = _hsts_preload
if _proxy_ssl_header:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Content-Security-Policy on every response (django-csp; Django 5.2 has none built in): the pages
# load their scripts, styles and socket from this origin only, never inline code (templates/,
# static/sessions/), and cannot be framed. connect-src 'self' covers the page's own ws:/wss: origin
# (CSP Level 3).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# Channel layer: Redis when REDIS_URL is set, or the primary that Redis Sentinel names when
# REDIS_SENTINELS is (project/redis_hosts.py; a failover is followed without a restart), with
# CHANNEL_LAYER_BACKEND picking the core or the pub/sub layer of channels_redis; otherwise the
# in-memory layer, which only reaches one process. With
# CHANNEL_LAYER_FANOUT (the default) that layer is wrapped in sessions_app.layers.FanoutChannelLayer:
# one message per process for a group send, delivered there to the local members (docs/channels.md).
# CHANNEL_LAYER_CAPACITY bounds the messages waiting on one channel (core and in-memory layers; the
# pub/sub layer has no bound); with the fan-out layer each process reads every group message from
# its one process channel, so this is the backlog a process can absorb during a stall.
_redis_host = layer_host(
    url=REDIS_URL,
    sentinels=_redis_sentinels,
    master=_redis_sentinel_master,
    db=_redis_sentinel_db,
    password=_redis_password,
    sentinel_password=_redis_sentinel_password,
)
if _redis_host is not None:
    _inner_layer: dict[str, Any] = {"BACKEND": _layer_backend, "CONFIG": {"hosts": [_redis_host]}}
    if _layer_backend == "channels_redis.core.RedisChannelLayer":
        # group_expiry: a process that died without leaving its groups (SIGKILL, or any stop: the
        # reader cannot leave them at interpreter exit) stays a member this long. Live processes
        # add themselves again every hour (sessions_app.layers): two hours instead of a day.
        _inner_layer["CONFIG"].update({"capacity": CHANNEL_LAYER_CAPACITY, "group_expiry": 7200})
else:
    _inner_layer = {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": CHANNEL_LAYER_CAPACITY}}
if _layer_fanout:
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "sessions_app.layers.FanoutChannelLayer", "CONFIG": {"inner": _inner_layer}}
    }
else:
    CHANNEL_LAYERS = {"default": _inner_layer}

# Argon2 (argon2-cffi) first: new passwords and every sign-in with an older hash get it (Django
# rewrites a hash made by another hasher when its user signs in). Django's hashers, run in a small
# pool of low-priority threads so that sign-ins cannot starve the sockets (sessions_app/passwords.py).
PASSWORD_HASHERS = [
    "sessions_app.passwords.Argon2PasswordHasher",
    "sessions_app.passwords.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]

# Password guessing is throttled per account and per address (django-axes; sessions_app/lockout.py
# has the policy and why). Its backend comes first: it refuses a locked-out sign-in before any
# password is checked. The address is REMOTE_ADDR (django-ipware is not installed): behind a proxy,
# run daphne with --proxy-headers so that it is the client's (README, "Operations").
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_FAILURE_LIMIT = "sessions_app.lockout.failure_limit"
AXES_COOLOFF_TIME = "sessions_app.lockout.cool_off"
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_RESET_ON_SUCCESS = False
AXES_DISABLE_ACCESS_LOG = True  # no row per successful sign-in; failures are still recorded
# axes >= 6.1 masks username and ip_address in its log lines by default; an operator must see the
# guessing address. The password is always masked (axes.helpers.cleanse_parameters).
AXES_SENSITIVE_PARAMETERS = ["username"]

# Optional two-factor sign-in (django-otp; sessions_app/second_factor.py). Wrong codes count as
# failed sign-ins for django-axes above, and each device throttles on its own too: after n wrong
# codes in a row it refuses every code for FACTOR * 2**(n-1) seconds (django-otp's ThrottlingMixin).
# The three OTP_* values are read from the environment above, before env.seal().
OTP_ADMIN_HIDE_SENSITIVE_DATA = True  # the admin never shows a device's key or QR code

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# django-sesame makes and checks the sign-in links' tokens (sessions_app/magiclinks.py). Its backend is
# not in AUTHENTICATION_BACKENDS: the links are checked by calling it directly, never through
# authenticate() (the admin's login, django-axes' counts). SESAME_ONE_TIME: claiming a link updates
# the user's last_login, which ends every other link of theirs; each link is also single-use by
# its row. SESAME_MAX_AGE: a token's life (sessions_app passes SESSIONS_MAGIC_LINK_MAX_AGE again
# as max_age, so a changed value applies at once).
SESAME_MAX_AGE = SESSIONS_MAGIC_LINK_MAX_AGE
SESAME_ONE_TIME = True
# A link is sent to the address the account had: changing the address (or the password) ends it.
SESAME_INVALIDATE_ON_EMAIL_CHANGE = True
SESAME_TOKEN_NAME = "sesame"  # noqa: S105 - the name of the link's parameter, not a secret

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
    "DEFAULT_AUTHENTICATION_CLASSES": ["sessions_app.tokens.JWTAuthentication"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # Every DRF view routed in urls.py is in GET /api/v1/schema/ (drf-spectacular), with no list to keep.
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# GET /api/v1/schema/ (OpenAPI) and /api/v1/docs/ (sessions_app/contract_views.py). OpenAPI 3.1:
# its schemas are JSON Schema, the dialect the socket's AsyncAPI document takes them in too.
SPECTACULAR_SETTINGS = {
    "TITLE": "Interactive sessions: REST API",
    "DESCRIPTION": "Tokens, health and metrics. The WebSocket protocol: /api/v1/socket/asyncapi.json.",
    "VERSION": "1",
    "OAS_VERSION": "3.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": "/api/v1",
    # /healthz and /metrics are plain Django views, which drf-spectacular does not see.
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "sessions_app.openapi.add_plain_views"],
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(seconds=_jwt_access_lifetime),
    "REFRESH_TOKEN_LIFETIME": timedelta(seconds=_jwt_refresh_lifetime),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": False,
    "TOKEN_BLACKLIST_SERIALIZER": "sessions_app.tokens.TokenRevokeSerializer",  # also ends sockets
    # Tokens carry a hash of the password hash: a password change ends them (sessions_app/tokens.py,
    # which also checks it for refresh tokens and caps a sign-in's age, SESSIONS_LOGIN_MAX_AGE).
    "CHECK_REVOKE_TOKEN": True,
    "TOKEN_OBTAIN_SERIALIZER": "sessions_app.tokens.TokenObtainPairSerializer",
    "TOKEN_REFRESH_SERIALIZER": "sessions_app.tokens.TokenRefreshSerializer",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        # One object per line: timestamp, level, logger, message and the record's extra fields.
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "timestamp", "levelname": "level", "name": "logger"},
        },
    },
    # DisallowedHost: one WARNING line with the Host and the client address, no traceback.
    "filters": {"disallowed_host": {"()": "sessions_app.oplog.DisallowedHostOneLine"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    # sessions_app.signin: sign-in events (password, link, two-factor; sessions_app/signin_log.py),
    # never a secret.
    "loggers": {
        "sessions_app": {"level": LOG_LEVEL},
        "django.security.DisallowedHost": {"filters": ["disallowed_host"]},
    },
}
