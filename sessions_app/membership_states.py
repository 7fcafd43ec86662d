"""The membership states: ``invite``, ``contacts``, ``remove``, ``rename``, ``delete`` and
``leave`` (the owner's changes to who is in a session, and leaving it). Registered on import, as
the other states (sessions_app/apps.py); the services and pushes are in sessions_app/services.py
and sessions_app/membership.py."""

from typing import Any

from . import replies, selectors, services
from .handlers import call, in_session
from .registry import Connection, state
from .serializers import ContactsSchema, InviteSchema, RemoveSchema, RenameSchema


@state("invite", schema=InviteSchema, needs_session=True, reply=replies.MembersReply)
async def invite(conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
    """Owner only: add a member or change their role; returns ``{"members": [...]}``.

    Pushes ``session_added`` or ``role_changed`` to the member, ``members`` to the session.
    """
    return await in_session(conn, services.member_invite, username=data["username"], role=data["role"])


@state("contacts", schema=ContactsSchema, reply=replies.UsersReply)
async def contacts(conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
    """The users the caller may invite by picking them: ``{"prefix"}`` -> ``{"users": [{"id",
    "username"}]}``, those sharing a session with the caller, by username, at most 20."""
    return {"users": await call(selectors.contacts_of, user_id=conn.user["id"], prefix=data["prefix"])}


@state("remove", schema=RemoveSchema, needs_session=True, reply=replies.MembersReply)
async def remove(conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
    """Owner only: ``{"username"}`` -> ``{"members": [...]}``; the member leaves the session.

    Pushes ``session_removed`` to the member (whose joined connections leave), ``members`` to the
    session. Errors: not_found (no such member), permission_denied, invalid_data (the owner).
    """
    return await in_session(conn, services.member_remove, username=data["username"])


@state("rename", schema=RenameSchema, needs_session=True, reply=replies.RenameReply)
async def rename(conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
    """Owner only: ``{"title"}`` -> ``{"id", "title"}``; pushes ``session_renamed`` to every member."""
    return await in_session(conn, services.session_rename, title=data["title"])


@state("delete", needs_session=True, reply=replies.DeleteReply)
async def delete(conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
    """Owner only: delete the joined session, ``{}`` -> ``{"id"}``; this connection leaves it.

    Pushes ``session_removed`` (``reason`` ``"deleted"``) to every member's other connections.
    Extra data is ignored. Errors: permission_denied (not the owner).
    """
    outcome = await call(
        services.session_delete, user=conn.user, session_id=conn.session_id, channel_name=conn.channel_name
    )
    await conn.leave_session(outcome.pushes)
    return outcome.data


@state("leave", reply=replies.EMPTY)
async def leave(conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
    """Leave the joined session (no-op when none): ``{}``."""
    if conn.session_id is not None:
        outcome = await call(services.session_leave, user=conn.user, channel_name=conn.channel_name)
        await conn.leave_session(outcome.pushes)
    return {}
