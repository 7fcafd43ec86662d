"""Interactive sessions: the shared document, its members, change log, revisions and presence."""

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class Role(models.TextChoices):
    """A member's role: owner (everything), editor (patch, save), viewer (read and receive pushes)."""

    OWNER = "owner", "Owner"
    EDITOR = "editor", "Editor"
    VIEWER = "viewer", "Viewer"


class Session(models.Model):
    """A shared JSON document. ``version`` counts the accepted patches since creation."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    title = models.CharField(max_length=200)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="owned_sessions")
    data = models.JSONField(default=dict)
    version = models.PositiveBigIntegerField(default=0)
    # Bytes of operations (compact JSON) logged since creation: where the next Change starts.
    log_end = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["owner", "-updated_at"])]

    def __str__(self) -> str:
        return self.title


class Membership(models.Model):
    """A user's role in a session. The owner has a membership row too."""

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="session_memberships")
    role = models.CharField(max_length=10, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["session", "user"], name="membership_unique_user")]

    def __str__(self) -> str:
        return f"{self.user} ({self.role})"


class Change(models.Model):
    """One accepted patch: the RFC 6902 operations that took the session to ``version``.

    ``start`` is the session's ``log_end`` before it: the kept log after a change holds
    ``session.log_end - start`` bytes, so it is trimmed to ``SESSIONS_CHANGE_LOG_BYTES`` with one
    indexed ``DELETE`` and no sum.
    """

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="changes")
    version = models.PositiveBigIntegerField()
    ops = models.JSONField()
    start = models.PositiveBigIntegerField(default=0)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    # The number of the revision this change made the document equal to (the ``restore`` state).
    restored = models.PositiveIntegerField(null=True, blank=True)
    # The patch's idempotency key (``patch``'s ``key``, chosen by the client; "" for none): a patch
    # sent again with the key of one its author already has in the log is not applied twice.
    key = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["session", "version"]
        constraints = [models.UniqueConstraint(fields=["session", "version"], name="change_unique_version")]
        indexes = [
            models.Index(fields=["session", "start"], name="change_session_start"),
            models.Index(fields=["session", "key"], name="change_session_key"),
        ]

    def __str__(self) -> str:
        return f"{self.session_id} v{self.version}"


class Revision(models.Model):
    """A named snapshot of ``data`` at ``version``, recorded by ``save``. Numbered from 1 per session."""

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="revisions")
    number = models.PositiveIntegerField()
    version = models.PositiveBigIntegerField()
    data = models.JSONField()
    # Bytes of ``data`` as JSON text (what counts towards the owner's SESSIONS_REVISION_BYTES_PER_USER).
    size = models.PositiveIntegerField(default=0)
    message = models.CharField(max_length=500, blank=True)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["session", "-number"]
        constraints = [models.UniqueConstraint(fields=["session", "number"], name="revision_unique_number")]

    def __str__(self) -> str:
        return f"{self.session_id} r{self.number}"


class ServerProcess(models.Model):
    """A running server process, kept alive by its heartbeat.

    When a process dies without cleaning up (SIGKILL), its connections stop counting once its
    heartbeat is older than ``SESSIONS_PRESENCE_TTL``; the next live process's heartbeat deletes it.
    """

    id = models.CharField(primary_key=True, max_length=64)
    started_at = models.DateTimeField(auto_now_add=True)
    heartbeat_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.id


class Connection(models.Model):
    """An open, authenticated socket: counts towards the user's limit, and is presence when joined."""

    channel_name = models.CharField(primary_key=True, max_length=120)
    server = models.ForeignKey(ServerProcess, on_delete=models.CASCADE, related_name="connections")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    session = models.ForeignKey(Session, null=True, blank=True, on_delete=models.SET_NULL, related_name="connections")
    opened_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["session", "user"]), models.Index(fields=["user"])]

    def __str__(self) -> str:
        return self.channel_name


class SignInTicket(models.Model):
    """A password (or magic-link) sign-in waiting for its second factor (sessions_app/second_factor.py).

    The client holds the ticket, a random string; only its SHA-256 is stored (a copy of the table
    signs no one in). Single use (deleted when it is exchanged for tokens), short-lived
    (``SESSIONS_OTP_TICKET_LIFETIME``), bound to the user's password hash at issue (a password
    change ends it) and to the endpoint family that issued it (``cookie``: the pages' cookie
    sign-in; else the JSON token API). At most ``second_factor.TICKETS_PER_USER`` per user.
    """

    digest = models.CharField(primary_key=True, max_length=64)  # hex SHA-256 of the ticket
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    password_hash = models.CharField(max_length=64)  # SimpleJWT's get_md5_hash_password(user.password)
    method = models.CharField(max_length=16)  # the first factor: "password", "magic"
    cookie = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        indexes = [models.Index(fields=["user", "created_at"])]

    def __str__(self) -> str:
        return f"sign-in ticket of user {self.user_id}"


class MagicLink(models.Model):
    """A sign-in link asked for by email (sessions_app/magiclinks.py): one row per request, with
    or without a matching account (``user`` null), kept ``SESSIONS_MAGIC_LINK_WINDOW`` seconds (or
    ``SESSIONS_MAGIC_LINK_MAX_AGE``, the longer) for the throttle, then deleted.

    Never holds a secret: the link's token is django-sesame's (signed, not stored), the browser's
    nonce only as its SHA-256, the username or email asked for only as a keyed hash.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="magic_links"
    )
    # HMAC-SHA256 (hex) of the username or email as asked for, casefolded: the throttle's key.
    login_digest = models.CharField(max_length=64)
    address = models.GenericIPAddressField(null=True, blank=True)
    # SHA-256 (hex) of the nonce in the asking browser's cookie.
    nonce_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    used_at = models.DateTimeField(null=True, blank=True)
    used_address = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["login_digest", "created_at"]),
            models.Index(fields=["address", "created_at"]),
            models.Index(fields=["user", "created_at"]),
            models.Index(fields=["created_at"]),
        ]

    def __str__(self) -> str:
        return f"sign-in link {self.id}"
