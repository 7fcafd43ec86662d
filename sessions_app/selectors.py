"""Reads. Synchronous ORM code: the consumer calls these through ``database_sync_to_async``."""

import functools
from datetime import timedelta
from typing import Any
from uuid import UUID

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import QuerySet, Sum, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from . import protocol
from .conf import app_settings
from .models import Change, Connection, Membership, Revision, Session
from .protocol import ProtocolError


def user_summary(user: Any) -> dict[str, Any]:
    """``{"id", "username"}`` of a user."""
    return {"id": user.pk, "username": user.get_username()}


def users_not_active(*, user_ids: list[int]) -> list[int]:
    """Those of ``user_ids`` that are now inactive or deleted."""
    active = set(get_user_model().objects.filter(pk__in=user_ids, is_active=True).values_list("pk", flat=True))
    return [user_id for user_id in user_ids if user_id not in active]


def live_connections() -> QuerySet[Connection]:
    """Connections whose server process has a heartbeat younger than ``SESSIONS_PRESENCE_TTL``."""
    cutoff = timezone.now() - timedelta(seconds=app_settings.PRESENCE_TTL)
    return Connection.objects.filter(server__heartbeat_at__gte=cutoff)


def presence_for_session(*, session_id: UUID) -> list[dict[str, Any]]:
    """Users with a live connection joined to the session, ``[{"id", "username"}]`` by username."""
    rows = (
        live_connections()
        .filter(session_id=session_id)
        .values_list("user_id", "user__username")
        .distinct()
        .order_by("user__username")
    )
    return [{"id": user_id, "username": username} for user_id, username in rows]


def user_present_elsewhere(*, session_id: UUID, user_id: int, channel_name: str) -> bool:
    """True when the user has another live connection joined to the session (another tab)."""
    return live_connections().filter(session_id=session_id, user_id=user_id).exclude(channel_name=channel_name).exists()


def membership_get(*, session_id: UUID, user_id: int, for_update: bool = False, document: bool = True) -> Membership:
    """The user's membership with its session loaded (without its ``data`` unless ``document``).

    Raises ProtocolError(NOT_FOUND) when the session does not exist or the user is not a member:
    a session the user may not see is not revealed. ``for_update`` locks the session row
    (PostgreSQL; a no-op on SQLite, whose writers are serialised anyway).
    """
    queryset = Membership.objects.select_related("session")
    if not document:
        queryset = queryset.defer("session__data")
    if for_update:
        queryset = queryset.select_for_update(of=("session",))
    try:
        # get(), not first(): no ORDER BY to add, and a third less ORM time on every patch.
        return queryset.get(session_id=session_id, user_id=user_id)
    except Membership.DoesNotExist:
        raise ProtocolError(protocol.NOT_FOUND, "No such session.") from None


def patch_target(*, session_id: UUID, user_id: int) -> tuple[str, int, int, str]:
    """``(role, version, log_end, document)`` of a session the user is a member of, the document
    as the JSON text the database stores (``jsonb``'s text form on PostgreSQL): decoding it is
    left to whoever applies the patch, out of the database thread for a large one.

    One statement (as the patch's writes, patching.py). Raises ProtocolError(NOT_FOUND) as
    membership_get does.
    """
    pk = Session._meta.pk.get_db_prep_value(session_id, connection)  # type: ignore[union-attr]
    with connection.cursor() as cursor:
        cursor.execute(_patch_target_sql(connection.vendor), [pk, user_id])
        row = cursor.fetchone()
    if row is None:
        raise ProtocolError(protocol.NOT_FOUND, "No such session.")
    return row


@functools.cache
def _patch_target_sql(vendor: str) -> str:
    quote = connection.ops.quote_name
    members, sessions = quote(Membership._meta.db_table), quote(Session._meta.db_table)
    return (
        f"SELECT m.role, s.version, s.log_end, CAST(s.data AS TEXT) FROM {members} m "  # noqa: S608 - table names
        f"INNER JOIN {sessions} s ON s.id = m.session_id WHERE m.session_id = %s AND m.user_id = %s"
    )


def session_document_text(*, session_id: UUID) -> str:
    """A session's document as the JSON text the database stores, not decoded."""
    return Session.objects.filter(pk=session_id).values_list(Cast("data", TextField()), flat=True).get()


def revision_bytes_of_owner(*, owner_id: int) -> int:
    """Bytes of the revisions of every session ``owner_id`` owns (``Revision.size``)."""
    return Revision.objects.filter(session__owner_id=owner_id).aggregate(total=Sum("size"))["total"] or 0


def members_of(*, session_id: UUID) -> list[dict[str, Any]]:
    """``[{"id", "username", "role"}]`` of a session, owner first, then by username."""
    rows = Membership.objects.filter(session_id=session_id).values_list("user_id", "user__username", "role")
    order = {"owner": 0, "editor": 1, "viewer": 2}
    members = [{"id": uid, "username": name, "role": role} for uid, name, role in rows]
    members.sort(key=lambda m: (order.get(m["role"], 3), m["username"]))
    return members


CONTACTS_LIMIT = 20


def contacts_of(*, user_id: int, prefix: str = "") -> list[dict[str, Any]]:
    """``[{"id", "username"}]``: the active users who share a session with ``user_id`` (not the
    user), whose username starts with ``prefix`` (case-insensitive), by username, at most
    ``CONTACTS_LIMIT``. The users an inviter may see: nobody they have no session with.
    """
    shared = Membership.objects.filter(user_id=user_id).values("session_id")
    rows = (
        get_user_model()
        .objects.filter(session_memberships__session_id__in=shared, is_active=True, username__istartswith=prefix)
        .exclude(pk=user_id)
        .order_by("username")
        .values_list("pk", "username")
        .distinct()[:CONTACTS_LIMIT]
    )
    return [{"id": pk, "username": username} for pk, username in rows]


def session_snapshot(*, session: Session, role: str) -> dict[str, Any]:
    """The protocol's session snapshot: ``{"id", "title", "version", "data", "role", "members", "present"}``."""
    return {
        "id": str(session.pk),
        "title": session.title,
        "version": session.version,
        "data": session.data,
        "role": role,
        "members": members_of(session_id=session.pk),
        "present": presence_for_session(session_id=session.pk),
    }


def changes_since(*, session_id: UUID, since: int, version: int) -> list[dict[str, Any]] | None:
    """The changes after ``since`` up to ``version``, oldest first, or None when some are no longer kept.

    Each change is ``{"version", "ops", "by": {"id", "username"} | None, "at"}``.
    """
    rows = list(
        Change.objects.filter(session_id=session_id, version__gt=since, version__lte=version)
        .order_by("version")
        .values_list("version", "ops", "author_id", "author__username", "created_at")
    )
    if len(rows) != version - since:
        return None
    return [
        {
            "version": number,
            "ops": ops,
            "by": {"id": author_id, "username": username} if author_id is not None else None,
            "at": protocol.utc_iso(created_at),
        }
        for number, ops, author_id, username, created_at in rows
    ]


def session_list_for_user(*, user_id: int) -> list[dict[str, Any]]:
    """Sessions the user may open, most recently updated first.

    ``[{"id", "title", "role", "version", "updated_at"}]``.
    """
    rows = (
        Membership.objects.filter(user_id=user_id)
        .order_by("-session__updated_at")
        .values_list("session_id", "session__title", "role", "session__version", "session__updated_at")
    )
    return [
        {"id": str(sid), "title": title, "role": role, "version": version, "updated_at": protocol.utc_iso(updated)}
        for sid, title, role, version, updated in rows
    ]
