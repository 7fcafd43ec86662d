"""Writes. Synchronous ORM code, one transaction each; the consumer calls these through
``database_sync_to_async`` (one hop per operation) and publishes the returned events afterwards.

Writes of memberships and titles run inside ``events.collecting``: the pushes the model signals
build for them (sessions_app.membership, the same for the admin) come back in ``Outcome.pushes``.
"""

import logging
from typing import Any
from uuid import UUID

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import JSONField, Sum, Value
from django.db.models.functions import Cast
from django.utils import timezone
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from . import documents, events, presence, protocol, selectors
from .conf import app_settings
from .events import Outcome as Outcome
from .models import Membership, Revision, Role, Session

# Patches have their own module (patching.py); they are services like these.
from .patching import NeedsWorker as NeedsWorker
from .patching import PatchBase as PatchBase
from .patching import session_patch as session_patch
from .patching import session_patch_write as session_patch_write
from .protocol import ProtocolError

logger = logging.getLogger(__name__)


# --- sessions ------------------------------------------------------------------------------------


@transaction.atomic
def session_create(*, user: dict[str, Any], channel_name: str, title: str, data: dict[str, Any]) -> Outcome:
    """Create a session owned by ``user`` and join the connection to it; returns the snapshot.

    Raises ProtocolError(INVALID_DATA) for a document over ``SESSIONS_MAX_DOCUMENT_BYTES`` or one
    holding U+0000, and ProtocolError(PERMISSION_DENIED) past ``SESSIONS_MAX_SESSIONS_PER_USER``.
    """
    documents.check_document(data)
    limit = app_settings.MAX_SESSIONS_PER_USER
    if Session.objects.filter(owner_id=user["id"]).count() >= limit:
        raise ProtocolError(
            protocol.PERMISSION_DENIED, f"You already own {limit} sessions, the most allowed.", data={"limit": limit}
        )
    with events.collecting(by=_by(user), exclude=channel_name) as pushes:  # the owner's other tabs
        session = Session.objects.create(title=title, owner_id=user["id"], data=data)
        Membership.objects.create(session=session, user_id=user["id"], role=Role.OWNER)
    pushes += presence.connection_move(channel_name=channel_name, user=user, session_id=session.pk)
    snapshot = selectors.session_snapshot(session=session, role=Role.OWNER)
    return Outcome(snapshot, pushes, session.pk, Role.OWNER, session.version)


@transaction.atomic
def session_join(*, user: dict[str, Any], channel_name: str, session_id: UUID, since: int | None) -> Outcome:
    """Join the connection to a session the user is a member of.

    Returns the snapshot, or ``{"id", "version", "changes"}`` when ``since`` is given and every
    change after it is still kept (``since`` above the current version also gets the snapshot).
    Raises ProtocolError(NOT_FOUND).
    """
    membership = selectors.membership_get(session_id=session_id, user_id=user["id"])
    session = membership.session
    pushes = presence.connection_move(channel_name=channel_name, user=user, session_id=session.pk)
    changes = None
    if since is not None and since <= session.version:
        changes = selectors.changes_since(session_id=session.pk, since=since, version=session.version)
    if changes is not None:
        data = {"id": str(session.pk), "version": session.version, "changes": changes}
    else:
        data = selectors.session_snapshot(session=session, role=membership.role)
    return Outcome(data, pushes, session.pk, membership.role, session.version)


@transaction.atomic
def session_leave(*, user: dict[str, Any], channel_name: str) -> Outcome:
    """Detach the connection from its session; returns the presence push if the user left."""
    return Outcome({}, presence.connection_move(channel_name=channel_name, user=user, session_id=None))


def _by(user: dict[str, Any]) -> dict[str, Any]:
    return {"id": user["id"], "username": user["username"]}


def _owned(*, user: dict[str, Any], session_id: UUID, action: str) -> Session:
    """The session, if ``user`` is its owner; raises NOT_FOUND, PERMISSION_DENIED ("Only the owner
    can ``action``.")."""
    membership = selectors.membership_get(session_id=session_id, user_id=user["id"])
    if membership.role != Role.OWNER:
        raise ProtocolError(protocol.PERMISSION_DENIED, f"Only the owner can {action}.")
    return membership.session


@transaction.atomic
def member_invite(
    *, user: dict[str, Any], session_id: UUID, username: str, role: str, channel_name: str = ""
) -> Outcome:
    """Add ``username`` to the session as ``role`` (editor or viewer), or change their role.

    Owner only. Returns ``{"members": [...]}``, with ``session_added`` or ``role_changed`` for the
    invitee and ``members`` for the session's other connections (not ``channel_name``). Raises
    NOT_FOUND (session or user), PERMISSION_DENIED (not the owner; or a new member past
    ``SESSIONS_MAX_MEMBERS_PER_SESSION``, ``data``: ``{"limit"}``), INVALID_DATA (the owner's own
    role cannot change).
    """
    session = _owned(user=user, session_id=session_id, action="invite")
    invitee = get_user_model().objects.filter(username=username, is_active=True).first()
    if invitee is None:
        raise ProtocolError(protocol.NOT_FOUND, f"No user named {username!r}.")
    if invitee.pk == session.owner_id:
        raise ProtocolError(protocol.INVALID_DATA, "The owner's role cannot change.")
    limit = app_settings.MAX_MEMBERS_PER_SESSION
    members = Membership.objects.filter(session_id=session_id)
    if not members.filter(user=invitee).exists() and members.count() >= limit:
        raise ProtocolError(
            protocol.PERMISSION_DENIED, f"This session has {limit} members, the most allowed.", data={"limit": limit}
        )
    with events.collecting(by=_by(user), exclude=channel_name) as pushes:
        Membership.objects.update_or_create(session_id=session_id, user=invitee, defaults={"role": role})
    return Outcome({"members": selectors.members_of(session_id=session_id)}, pushes)


@transaction.atomic
def member_remove(*, user: dict[str, Any], session_id: UUID, username: str, channel_name: str = "") -> Outcome:
    """Remove ``username``'s membership; returns ``{"members": [...]}``.

    Owner only. The removed user's connections get ``session_removed`` (one joined to the session
    leaves it) and the session's other connections ``members``. Raises NOT_FOUND (the session, or
    no such member), PERMISSION_DENIED (not the owner), INVALID_DATA (the owner cannot be removed).
    """
    session = _owned(user=user, session_id=session_id, action="remove members")
    member = Membership.objects.filter(session_id=session_id, user__username=username).first()
    if member is None:
        raise ProtocolError(protocol.NOT_FOUND, f"{username!r} is not a member of this session.")
    if member.user_id == session.owner_id:
        raise ProtocolError(protocol.INVALID_DATA, "The owner cannot be removed.")
    with events.collecting(by=_by(user), exclude=channel_name) as pushes:
        member.delete()
    return Outcome({"members": selectors.members_of(session_id=session_id)}, pushes)


@transaction.atomic
def session_rename(*, user: dict[str, Any], session_id: UUID, title: str, channel_name: str = "") -> Outcome:
    """Change the session's title; returns ``{"id", "title"}``.

    Owner only. Every member's connections but ``channel_name`` get ``session_renamed``. Raises
    NOT_FOUND, PERMISSION_DENIED (not the owner).
    """
    session = _owned(user=user, session_id=session_id, action="rename the session")
    with events.collecting(by=_by(user), exclude=channel_name) as pushes:
        session.title = title
        session.save(update_fields=["title"])
    return Outcome({"id": str(session_id), "title": title}, pushes)


@transaction.atomic
def session_delete(*, user: dict[str, Any], session_id: UUID, channel_name: str = "") -> Outcome:
    """Delete the session with its members, change log and revisions; returns ``{"id"}``.

    Owner only. Every member's connections but ``channel_name`` get ``session_removed`` with
    ``reason`` ``"deleted"`` (sessions_app.membership; those joined to it leave it), as when an
    operator deletes it in the admin. Raises NOT_FOUND, PERMISSION_DENIED (not the owner).
    """
    session = _owned(user=user, session_id=session_id, action="delete the session")
    with events.collecting(by=_by(user), exclude=channel_name) as pushes:
        session.delete()
    return Outcome({"id": str(session_id)}, pushes)


@transaction.atomic
def revision_create(*, user: dict[str, Any], channel_name: str, session_id: UUID, message: str) -> Outcome:
    """Record a revision (a snapshot of ``data`` at the current version); returns ``{"revision", "version"}``.

    Owner or editor. Revisions are numbered from 1 per session; the session row is locked while
    numbering (PostgreSQL), so concurrent saves get distinct numbers. Bounded: a session keeps its
    last ``SESSIONS_REVISIONS_KEEP`` revisions (the oldest are deleted in the same transaction),
    and the revisions of all the sessions one user owns hold at most
    ``SESSIONS_REVISION_BYTES_PER_USER`` bytes (the owner's row is locked while counting, so
    concurrent saves cannot both fit in the last room). Raises NOT_FOUND, PERMISSION_DENIED, and
    QUOTA_EXCEEDED (``data``: ``{"limit", "used"}``, bytes) for a save past the owner's quota;
    the document is copied as the database's JSON text, never decoded here.
    """
    membership = selectors.membership_get(session_id=session_id, user_id=user["id"], for_update=True, document=False)
    if membership.role == Role.VIEWER:
        raise ProtocolError(protocol.PERMISSION_DENIED, "Viewers cannot save the session.")
    session = membership.session
    text = selectors.session_document_text(session_id=session_id)
    size = len(text.encode())
    list(get_user_model().objects.select_for_update().filter(pk=session.owner_id).values_list("pk"))
    last = Revision.objects.filter(session_id=session_id).order_by("-number").values_list("number", flat=True).first()
    number = (last or 0) + 1
    older = Revision.objects.filter(session_id=session_id, number__lte=number - app_settings.REVISIONS_KEEP)
    freed = older.aggregate(total=Sum("size"))["total"] or 0
    used = selectors.revision_bytes_of_owner(owner_id=session.owner_id)
    limit = app_settings.REVISION_BYTES_PER_USER
    if used - freed + size > limit:
        whose = "your" if session.owner_id == user["id"] else "the owner's"
        raise ProtocolError(
            protocol.QUOTA_EXCEEDED,
            f"Saving would take the revisions of {whose} sessions past {limit} bytes.",
            data={"limit": limit, "used": used},
        )
    older.delete()
    Revision.objects.create(
        session_id=session_id,
        number=number,
        version=session.version,
        data=Cast(Value(text), output_field=JSONField()),
        size=size,
        message=message,
        author_id=user["id"],
    )
    data = {"revision": number, "version": session.version}
    pushed = {"session": str(session_id), **data, "by": _by(user)}
    return Outcome(data, [events.push(session_id, "saved", pushed, exclude=channel_name)], session_id, membership.role)


# --- operators -----------------------------------------------------------------------------------


@transaction.atomic
def user_sign_out(*, user_ids: list[int]) -> int:
    """Sign users out everywhere: blacklist each of their refresh tokens that is still valid (so no
    client of theirs can renew its access token) and, once that commits, end their sockets on
    every process (``not_authenticated``, reason ``disconnected``, 4401). Returns the number of
    refresh tokens revoked. Access tokens already issued still pass until they expire
    (``JWT_ACCESS_LIFETIME``): deactivate the account to refuse them at once.
    """
    outstanding = OutstandingToken.objects.filter(
        user_id__in=user_ids, expires_at__gt=timezone.now(), blacklistedtoken__isnull=True
    )
    revoked = BlacklistedToken.objects.bulk_create([BlacklistedToken(token=token) for token in outstanding])
    events.emit([events.user_disconnect(user_id, protocol.DISCONNECTED) for user_id in user_ids])
    return len(revoked)
