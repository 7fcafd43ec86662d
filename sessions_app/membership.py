"""The pushes a change of membership or of a session's title sends, whoever makes it.

sessions_app.signals calls these for every model save and delete of a Membership or a Session: the
owner's ``invite``, ``remove`` and ``rename`` (services, through the socket), the admin (its inlines,
its change and delete pages), a shell. Synchronous ORM code that reads what the push carries and
hands the events to ``events.emit`` (sent once the change commits). ``QuerySet.update()`` and SQL
send no signal, and so no push.

- a user becomes a member: ``session_added`` ``{"session", "title", "role", "version",
  "updated_at", "by"}`` to that user;
- a member's role changes: ``role_changed`` ``{"session", "role", "by"}`` to that user;
- a membership ends: ``session_removed`` ``{"session", "reason": "removed", "by"}`` to that user;
- any of those three: ``members`` ``{"session", "members"}`` to the session's joined connections;
- the title changes: ``session_renamed`` ``{"session", "title", "by"}`` to every member;
- the session is deleted: ``session_removed`` ``{"session", "reason": "deleted", "by"}`` to every
  member it had.

``by`` is the owner (``{"id", "username"}``) for a change made through the socket, else None. A
user push reaches every open connection of the user (for its session list); one joined to the
session it names leaves it (``session_removed``) or takes the new role (``role_changed``) first.
"""

import threading
from typing import Any

from . import events, protocol, selectors
from .models import Membership, Role, Session

# Sessions whose deletion has begun on this thread: session id -> the ``origin`` of that deletion
# (Django's delete signals name it). Their memberships are deleted first, by the same deletion;
# those deletes send no ``session_removed`` of their own, the session's ``deleted`` one says it all.
_deleting = threading.local()


def _being_deleted() -> dict[Any, Any]:
    if not hasattr(_deleting, "sessions"):
        _deleting.sessions = {}
    return _deleting.sessions


def _members_push(session_id: Any, exclude: str) -> events.Event:
    members = selectors.members_of(session_id=session_id)
    return events.push(session_id, "members", {"session": str(session_id), "members": members}, exclude=exclude)


def membership_saved(membership: Membership, *, created: bool, previous_role: str | None) -> None:
    """After a Membership is saved: ``session_added`` (created) or ``role_changed`` (its role is
    not ``previous_role``) to its user, and ``members`` to the session."""
    by, exclude = events.made_by()
    session_id, user_id, role = membership.session_id, membership.user_id, membership.role
    if created:
        if Membership.session.is_cached(membership):  # create(session=...): the instance just saved
            cached = membership.session
            session = (cached.title, cached.version, cached.updated_at)
        else:
            session = Session.objects.filter(pk=session_id).values_list("title", "version", "updated_at").first()
        if session is None:
            return
        title, version, updated_at = session
        row = {"session": str(session_id), "title": title, "role": role, "version": version}
        data = {**row, "updated_at": protocol.utc_iso(updated_at), "by": by}
        pushes = [events.user_push([user_id], "session_added", data, exclude=exclude)]
        if role == Role.OWNER:  # a new session: nobody is joined to it yet
            events.emit(pushes)
            return
    elif previous_role != role:
        data = {"session": str(session_id), "role": role, "by": by}
        pushes = [
            events.user_push(
                [user_id], "role_changed", data, exclude=exclude, session=str(session_id), action=events.ROLE, role=role
            )
        ]
    else:
        return
    events.emit([*pushes, _members_push(session_id, exclude)])


def membership_deleted(membership: Membership, *, origin: Any) -> None:
    """After a Membership is deleted: ``session_removed`` to its user, ``members`` to the session;
    nothing when it goes with its session (``session_deleted`` tells)."""
    session_id = membership.session_id
    deleting = _being_deleted()
    if session_id in deleting and deleting[session_id] is origin:
        return
    by, exclude = events.made_by()
    data = {"session": str(session_id), "reason": "removed", "by": by}
    push = events.user_push(
        [membership.user_id], "session_removed", data, exclude=exclude, session=str(session_id), action=events.LEAVE
    )
    events.emit([push, _members_push(session_id, exclude)])


def session_saved(session: Session, *, previous_title: str | None) -> None:
    """After a Session is saved: ``session_renamed`` to every member when the title changed."""
    if previous_title is None or previous_title == session.title:
        return
    by, exclude = events.made_by()
    members = Membership.objects.filter(session_id=session.pk).values_list("user_id", flat=True)
    data = {"session": str(session.pk), "title": session.title, "by": by}
    events.emit([events.user_push(list(members), "session_renamed", data, exclude=exclude)])


def session_deleting(session: Session, *, origin: Any) -> None:
    """Before a Session is deleted: note its members, who are told once it is gone."""
    members = list(Membership.objects.filter(session_id=session.pk).values_list("user_id", flat=True))
    session._sessions_members = members  # type: ignore[attr-defined]
    _being_deleted()[session.pk] = origin


def session_deleted(session: Session) -> None:
    """After a Session is deleted: ``session_removed`` (``deleted``) to every member it had."""
    _being_deleted().pop(session.pk, None)
    members = getattr(session, "_sessions_members", [])
    by, exclude = events.made_by()
    data = {"session": str(session.pk), "reason": "deleted", "by": by}
    sid = str(session.pk)
    events.emit([events.user_push(members, "session_removed", data, exclude=exclude, session=sid, action=events.LEAVE)])
