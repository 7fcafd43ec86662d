"""The app's own settings, with their defaults: the app runs in any project that sets none of them.

The pattern of Django REST framework's ``APISettings`` (``rest_framework.settings.api_settings``)
and SimpleJWT's ``api_settings``: one object whose attributes are the settings without their
prefix, read from the project's ``SESSIONS_<NAME>`` when it defines one, else from ``DEFAULTS``,
and loaded again when Django's ``setting_changed`` signal names a ``SESSIONS_*`` setting
(``override_settings`` in tests)::

    from sessions_app.conf import app_settings

    if len(frame) > app_settings.MAX_MESSAGE_BYTES: ...

Unlike DRF's object, which resolves each name through ``__getattr__`` on first use, every value is
loaded into the instance's ``__dict__`` at once: a read is a plain instance attribute (the consumer
reads several on every frame, and ``django.conf.settings.X`` through its LazyObject was measurably
slower). Each value is checked as it is loaded (type and bounds, ``BOUNDS``); a bad one raises
ImproperlyConfigured naming the setting.

Nothing here reads ``django.conf.settings`` at import unless the settings are already configured,
so ``project/settings.py`` can import ``DEFAULTS`` and ``BOUNDS``; the values are then loaded on
first attribute access instead.
"""

import ipaddress
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

PREFIX = "SESSIONS_"

# Every setting, without its prefix, and its default. Units: seconds, bytes, messages, counts.
# README.md's "Settings" table lists each one with this default (tests/test_conf.py checks it).
DEFAULTS: dict[str, Any] = {
    # Seconds a new socket has to send its token.
    "AUTH_TIMEOUT": 10.0,
    # Seconds a thread may hold the GIL while another waits for it (Python's default: 0.005). The
    # ORM runs in one thread beside the event loop; each database call releases the GIL and must
    # win it back from a busy loop, which with the default can cost up to 5 ms per call (the
    # "convoy effect", CPython issue bpo-7946). Applied by project.asgi when the server loads.
    "GIL_SWITCH_INTERVAL": 0.001,
    # Pushes held for a connection while it handles a request; beyond this they are dropped and
    # the client, seeing the version gap, re-joins with since (docs/protocol.md).
    "PUSH_BUFFER": 100,
    # Seconds before token expiry that ``token_expiring`` is pushed.
    "TOKEN_EXPIRY_WARNING": 30.0,
    # Largest frame, text or binary, bytes.
    "MAX_MESSAGE_BYTES": 65536,
    # Bytes that may be queued for one client that does not read; past it the connection is
    # closed with 4008 ("too slow").
    "MAX_SEND_BUFFER": 1048576,
    # Frames per second per connection (token bucket rate) and the bucket size.
    "RATE_LIMIT": 30.0,
    "RATE_BURST": 60,
    # Open authenticated sockets per user, all processes.
    "MAX_CONNECTIONS_PER_USER": 20,
    # Sessions a user may own.
    "MAX_SESSIONS_PER_USER": 500,
    # Members of one session, the owner included (``invite`` of one more is ``permission_denied``).
    "MAX_MEMBERS_PER_SESSION": 1000,
    # Largest session document, bytes of compact JSON.
    "MAX_DOCUMENT_BYTES": 1048576,
    # Changes kept per session for ``join`` with ``since``, and the most bytes (compact JSON of
    # their operations) they may hold together: replaying more than a document's worth of
    # operations is no cheaper than the snapshot, which is what an older ``since`` gets.
    "CHANGE_LOG_KEEP": 1000,
    "CHANGE_LOG_BYTES": 1048576,
    # Revisions kept per session (``save`` prunes the oldest), and the most bytes of revisions
    # (JSON text of their documents) in all the sessions one user owns (then ``quota_exceeded``).
    "REVISIONS_KEEP": 50,
    "REVISION_BYTES_PER_USER": 67108864,
    # The work a patch may do, in nodes of JSON visited: this many per byte of its operations
    # (compact JSON), and at least PATCH_WORK_MIN (then ``patch_too_costly``).
    "PATCH_WORK_PER_BYTE": 8,
    "PATCH_WORK_MIN": 262144,
    # A patch on an older version is rebased on the changes since (sessions_app/rebase.py) when
    # it is at most this many versions behind (older: ``conflict``, as is a collision), within
    # this many pointer comparisons (its operations' effects times the changes' effects).
    "REBASE_MAX_CHANGES": 100,
    "REBASE_MAX_STEPS": 20000,
    # Threads that apply patches to documents larger than PATCH_INLINE_BYTES (bytes of JSON as
    # stored), away from the one thread every connection's database calls share.
    "PATCH_WORKERS": 2,
    "PATCH_INLINE_BYTES": 65536,
    # Seconds between a process's heartbeats, and after the last one that it counts as dead.
    "PRESENCE_HEARTBEAT": 10.0,
    "PRESENCE_TTL": 30.0,
    # Seconds a process told to stop (SIGTERM) waits for its clients to take the 1012 close that
    # follows their last reply, before it exits all the same (sessions_app.drain).
    "DRAIN_TIMEOUT": 10.0,
    # Failed sign-ins (token API and admin) for one username, or from one address, each within
    # LOGIN_LOCKOUT seconds of the one before, after which sign-ins for that username or from that
    # address are refused (HTTP 429) until LOGIN_LOCKOUT seconds after the last failure
    # (django-axes, sessions_app/lockout.py).
    "LOGIN_FAILURE_LIMIT": 5,
    "LOGIN_LOCKOUT": 900.0,
    # Seconds after a password sign-in past which its refresh token is refused and no token of it
    # is valid, however often it was rotated (sessions_app/tokens.py).
    "LOGIN_MAX_AGE": 604800,
    # Seconds a sign-in ticket lives: the time between a password (or magic-link) sign-in of a user
    # with two-factor on and the code that completes it (sessions_app/second_factor.py).
    "OTP_TICKET_LIFETIME": 300.0,
    # Recovery codes (django-otp static tokens) made at enrolment and at each regeneration.
    "OTP_RECOVERY_CODES": 10,
    # Seconds since the sign-in (the access token's auth_time) within which two-factor may be
    # turned on (enrol and confirm; then 403 sign_in_again).
    "OTP_ENROL_SIGN_IN_AGE": 600,
    # Sign-in by email link (sessions_app/magiclinks.py): seconds a link stays valid; links asked
    # for one username or email, or from one address, within MAGIC_LINK_WINDOW seconds, beyond
    # which more are refused (HTTP 429); messages waiting to be sent (sessions_app/mailer.py).
    "MAGIC_LINK_MAX_AGE": 600,
    "MAGIC_LINK_LIMIT": 5,
    "MAGIC_LINK_WINDOW": 3600.0,
    "MAGIC_LINK_MAIL_QUEUE": 100,
    # WebSocket origins (Channels patterns); empty: the hosts of ALLOWED_HOSTS.
    "ALLOWED_ORIGINS": (),
    # Client networks (CIDR) that may read GET /metrics (sessions_app.metrics_view); empty: none.
    "METRICS_NETWORKS": ("127.0.0.0/8", "::1/128"),
}

# The inclusive bounds (minimum, maximum or None) of every numeric setting; project/settings.py
# applies the same bounds to the environment variables.
BOUNDS: dict[str, tuple[float, float | None]] = {
    "AUTH_TIMEOUT": (0, None),
    "GIL_SWITCH_INTERVAL": (0.0001, 0.1),
    "PUSH_BUFFER": (1, None),
    "TOKEN_EXPIRY_WARNING": (0, None),
    "MAX_MESSAGE_BYTES": (1024, None),  # the handshake's first frame must fit
    "MAX_SEND_BUFFER": (1, None),
    "RATE_LIMIT": (0, None),
    "RATE_BURST": (1, None),  # 0 would refuse every frame
    "MAX_CONNECTIONS_PER_USER": (0, None),
    "MAX_SESSIONS_PER_USER": (0, None),
    "MAX_MEMBERS_PER_SESSION": (1, None),  # the owner is a member
    "MAX_DOCUMENT_BYTES": (0, None),
    "CHANGE_LOG_KEEP": (0, None),
    "CHANGE_LOG_BYTES": (0, None),
    "REVISIONS_KEEP": (1, None),
    "REVISION_BYTES_PER_USER": (0, None),
    "PATCH_WORK_PER_BYTE": (0, None),
    "PATCH_WORK_MIN": (0, None),
    "REBASE_MAX_CHANGES": (0, None),
    "REBASE_MAX_STEPS": (0, None),
    "PATCH_WORKERS": (1, None),
    "PATCH_INLINE_BYTES": (0, None),
    "PRESENCE_HEARTBEAT": (0.1, None),
    "PRESENCE_TTL": (0, None),
    "DRAIN_TIMEOUT": (0, None),
    "LOGIN_FAILURE_LIMIT": (1, None),
    "LOGIN_LOCKOUT": (1, None),
    "LOGIN_MAX_AGE": (1, None),
    "OTP_TICKET_LIFETIME": (1, 3600),
    "OTP_RECOVERY_CODES": (1, 50),
    "OTP_ENROL_SIGN_IN_AGE": (1, None),
    "MAGIC_LINK_MAX_AGE": (1, None),
    "MAGIC_LINK_LIMIT": (1, None),
    "MAGIC_LINK_WINDOW": (1, None),
    "MAGIC_LINK_MAIL_QUEUE": (1, None),
}


def _check(name: str, value: Any) -> Any:
    """``value`` for the setting ``name`` (without prefix), checked against its default's type and
    its bounds: an int for an int, an int or float for a float (returned as a float), a list or
    tuple of strings for a tuple (returned as a tuple). Raises ImproperlyConfigured naming
    ``SESSIONS_<name>`` otherwise.
    """
    default = DEFAULTS[name]
    full = PREFIX + name
    if isinstance(default, tuple):
        if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
            raise ImproperlyConfigured(f"{full}={value!r} must be a list of strings")
        return tuple(value)
    # bool is an int to isinstance, never a count or a number of seconds here.
    kinds = (int,) if isinstance(default, int) else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ImproperlyConfigured(f"{full}={value!r} must be {'an int' if kinds == (int,) else 'a number'}")
    low, high = BOUNDS[name]
    if not (value >= low and (high is None or value <= high)):  # also refuses NaN
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ImproperlyConfigured(f"{full}={value!r} must be {bound}")
    return float(value) if isinstance(default, float) else value


class AppSettings:
    """The ``SESSIONS_*`` settings without their prefix, as plain instance attributes.

    The annotations are for type checkers; ``reload`` sets the values.
    """

    AUTH_TIMEOUT: float
    GIL_SWITCH_INTERVAL: float
    PUSH_BUFFER: int
    TOKEN_EXPIRY_WARNING: float
    MAX_MESSAGE_BYTES: int
    MAX_SEND_BUFFER: int
    RATE_LIMIT: float
    RATE_BURST: int
    MAX_CONNECTIONS_PER_USER: int
    MAX_SESSIONS_PER_USER: int
    MAX_MEMBERS_PER_SESSION: int
    MAX_DOCUMENT_BYTES: int
    CHANGE_LOG_KEEP: int
    CHANGE_LOG_BYTES: int
    REVISIONS_KEEP: int
    REVISION_BYTES_PER_USER: int
    PATCH_WORK_PER_BYTE: int
    PATCH_WORK_MIN: int
    REBASE_MAX_CHANGES: int
    REBASE_MAX_STEPS: int
    PATCH_WORKERS: int
    PATCH_INLINE_BYTES: int
    PRESENCE_HEARTBEAT: float
    PRESENCE_TTL: float
    DRAIN_TIMEOUT: float
    LOGIN_FAILURE_LIMIT: int
    LOGIN_LOCKOUT: float
    LOGIN_MAX_AGE: int
    OTP_TICKET_LIFETIME: float
    OTP_RECOVERY_CODES: int
    OTP_ENROL_SIGN_IN_AGE: int
    MAGIC_LINK_MAX_AGE: int
    MAGIC_LINK_LIMIT: int
    MAGIC_LINK_WINDOW: float
    MAGIC_LINK_MAIL_QUEUE: int
    ALLOWED_ORIGINS: tuple[str, ...]
    METRICS_NETWORKS: tuple[str, ...]

    def reload(self) -> None:
        """Read every setting from ``django.conf.settings`` (else its default) and check it.

        Called at import when the settings are configured, on first access otherwise, and when
        ``setting_changed`` names a ``SESSIONS_*`` setting. All values are checked before any is
        replaced, so a bad one leaves the previous values in place.
        """
        values = {name: _check(name, getattr(settings, PREFIX + name, default)) for name, default in DEFAULTS.items()}
        if values["PRESENCE_TTL"] <= values["PRESENCE_HEARTBEAT"]:
            # Else every process takes the others for dead between two of their heartbeats and
            # deletes their live connections.
            raise ImproperlyConfigured(
                f"{PREFIX}PRESENCE_TTL={values['PRESENCE_TTL']!r} must be more than "
                f"{PREFIX}PRESENCE_HEARTBEAT={values['PRESENCE_HEARTBEAT']!r} (three times it is usual)"
            )
        for network in values["METRICS_NETWORKS"]:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ImproperlyConfigured(f"{PREFIX}METRICS_NETWORKS: {network!r} is not a network") from None
        self.__dict__.update(values)

    if not TYPE_CHECKING:  # type checkers keep flagging unknown names (a __getattr__ would hide them)

        def __getattr__(self, name: str) -> Any:
            """Called only for a name not yet in the instance's ``__dict__``: loads every setting
            the first time (when this module was imported before the settings were configured).
            """
            if name in DEFAULTS and name not in self.__dict__:
                self.reload()
                return self.__dict__[name]
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


app_settings = AppSettings()


def reload_app_settings(*, setting: str, **kwargs: Any) -> None:
    """Called on Django's ``setting_changed`` (``override_settings``): reload on a ``SESSIONS_*`` name."""
    if setting.startswith(PREFIX):
        app_settings.reload()


setting_changed.connect(reload_app_settings)

if settings.configured:
    app_settings.reload()
