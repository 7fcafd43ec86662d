"""Membership and session changes on live connections (issue 11 item 4, issue 12 item 2).

Whoever makes the change, the owner through the socket (``invite``, ``remove``, ``rename``) or an
operator through the ORM (the admin saves and deletes models), the same pushes reach the members'
open connections once it commits; a removed member's joined connection leaves the session at once.
"""

from typing import Any

import pytest
from channels.db import database_sync_to_async

from sessions_app import events
from sessions_app.models import Membership, Session
from sessions_app.registry import state
from tests.utils import connected

pytestmark = pytest.mark.django_db(transaction=True)

ADD = [{"op": "add", "path": "/a", "value": 1}]


def who(user: Any) -> dict[str, Any]:
    return {"id": user.pk, "username": user.username}


async def error(client: Any, state: str, data: Any = None) -> dict[str, Any]:
    reply = await client.request(state, data)
    assert reply["state"] == "error", reply
    return reply


async def joined_pair(owner: Any, member: Any, role: str = "editor") -> str:
    """``owner`` creates a session, invites ``member`` as ``role``, and both join; returns its id."""
    session_id = (await owner.ok("create", {"title": "Shared", "data": {}}))["id"]
    await owner.ok("invite", {"username": member.user["username"], "role": role})
    await member.ok("join", {"session": session_id})
    await owner.push("presence")
    member.pushes.clear()
    owner.pushes.clear()
    return session_id


@database_sync_to_async
def delete_membership(session_id: str, user: Any) -> None:
    """What the admin's inline does for a deleted row: a model delete."""
    Membership.objects.get(session_id=session_id, user=user).delete()


@database_sync_to_async
def delete_session(session_id: str) -> None:
    Session.objects.get(pk=session_id).delete()


# --- removal (11.4) ------------------------------------------------------------------------------


async def test_a_membership_deleted_through_the_orm_pushes_session_removed_and_the_member_leaves(alice, bob) -> None:
    async with connected(alice) as owner, connected(bob) as member:
        session_id = await joined_pair(owner, member)
        await delete_membership(session_id, bob)

        removed = await member.push("session_removed")
        assert removed["data"] == {"session": session_id, "reason": "removed", "by": None}
        left = await owner.push("presence")
        assert left["data"] == {"session": session_id, "present": [who(alice)], "left": who(bob)}
        await owner.ok("patch", {"version": 0, "ops": ADD})
        assert await member.nothing()
        assert (await error(member, "presence"))["code"] == "not_joined"
        assert (await error(member, "join", {"session": session_id}))["code"] == "not_found"


async def test_the_owner_removes_a_member_with_remove(alice, bob) -> None:
    async with connected(alice) as owner, connected(bob) as member, connected(bob) as elsewhere:
        session_id = await joined_pair(owner, member)
        elsewhere.pushes.clear()
        assert await owner.ok("remove", {"username": "bob"}) == {"members": [{**who(alice), "role": "owner"}]}

        for connection in (member, elsewhere):  # joined or not: the list loses the session
            removed = await connection.push("session_removed")
            assert removed["data"] == {"session": session_id, "reason": "removed", "by": who(alice)}
        await owner.push("presence")
        await owner.ok("patch", {"version": 0, "ops": ADD})
        assert await member.nothing()
        assert (await error(member, "patch", {"version": 1, "ops": ADD}))["code"] == "not_joined"
        assert [s["id"] for s in (await elsewhere.ok("list"))["sessions"]] == []


async def test_remove_is_for_the_owner_and_refuses_strangers_and_the_owner(alice, bob, carol) -> None:
    async with connected(alice) as owner, connected(bob) as member:
        session_id = await joined_pair(owner, member)
        assert (await error(member, "remove", {"username": "alice"}))["code"] == "permission_denied"
        assert (await error(owner, "remove", {"username": "carol"}))["code"] == "not_found"
        assert (await error(owner, "remove", {"username": "nobody"}))["code"] == "not_found"
        assert (await error(owner, "remove", {"username": "alice"}))["code"] == "invalid_data"
        assert (await error(owner, "remove", {"username": 5}))["code"] == "invalid_data"
        assert await Membership.objects.filter(session_id=session_id).acount() == 2


async def test_a_demoted_editor_learns_the_new_role_and_their_next_patch_is_refused(alice, bob) -> None:
    async with connected(alice) as owner, connected(bob) as member:
        session_id = await joined_pair(owner, member)
        await owner.ok("patch", {"version": 0, "ops": ADD})
        assert (await member.push("patched"))["data"]["version"] == 1

        await owner.ok("invite", {"username": "bob", "role": "viewer"})
        changed = await member.push("role_changed")
        assert changed["data"] == {"session": session_id, "role": "viewer", "by": who(alice)}
        # A patch on a version the connection knows is old: the refreshed role answers it, not a
        # conflict that would send a client off to rebase and retry.
        stale = await error(member, "patch", {"version": 0, "ops": ADD})
        assert stale["code"] == "permission_denied"
        assert (await error(member, "patch", {"version": 1, "ops": ADD}))["code"] == "permission_denied"

        await owner.ok("invite", {"username": "bob", "role": "editor"})
        assert (await member.push("role_changed"))["data"]["role"] == "editor"
        assert await member.ok("patch", {"version": 1, "ops": [{"op": "add", "path": "/b", "value": 2}]})


async def test_deleting_a_session_through_the_orm_ends_its_live_connections(alice, bob) -> None:
    async with connected(alice) as owner, connected(bob) as member, connected(bob) as elsewhere:
        session_id = await joined_pair(owner, member)
        elsewhere.pushes.clear()
        await delete_session(session_id)
        for connection in (owner, member, elsewhere):
            removed = await connection.push("session_removed")
            assert removed["data"] == {"session": session_id, "reason": "deleted", "by": None}
        for connection in (owner, member):
            assert (await error(connection, "presence"))["code"] == "not_joined"
        assert await owner.nothing() and await member.nothing()


async def test_the_owner_deletes_the_session_through_the_socket(alice, bob) -> None:
    async with connected(alice) as owner, connected(alice) as tab2, connected(bob) as member:
        session_id = await joined_pair(owner, member)
        tab2.pushes.clear()
        await owner.ok("patch", {"version": 0, "ops": ADD})
        await member.push("patched")
        assert (await error(member, "delete"))["code"] == "permission_denied"
        assert await owner.ok("delete", {"ignored": True}) == {"id": session_id}
        for connection in (tab2, member):
            removed = await connection.push("session_removed")
            assert removed["data"] == {"session": session_id, "reason": "deleted", "by": who(alice)}
        assert await owner.nothing()  # its reply said it; it left the session
        for connection in (owner, member):
            assert (await error(connection, "presence"))["code"] == "not_joined"
        assert (await error(owner, "join", {"session": session_id}))["code"] == "not_found"
        assert (await owner.ok("list"))["sessions"] == []
        assert not await database_sync_to_async(Session.objects.filter(pk=session_id).exists)()
        assert (await error(owner, "delete"))["code"] == "not_joined"


# --- live membership events (12.2) ----------------------------------------------------------------


async def test_an_invite_reaches_the_invitees_open_connections_not_joined_to_the_session(alice, bob) -> None:
    async with connected(alice) as owner, connected(bob) as invitee:
        await invitee.ok("create", {"title": "Bob's own"})
        session = await owner.ok("create", {"title": "Groceries", "data": {}})
        await owner.ok("invite", {"username": "bob", "role": "editor"})

        added = await invitee.push("session_added")
        data = added["data"]
        assert data.pop("updated_at")
        expected = {"session": session["id"], "title": "Groceries", "role": "editor", "version": 0}
        assert data == {**expected, "by": who(alice)}


async def test_members_of_a_joined_session_are_pushed_the_new_member_list(alice, bob, carol) -> None:
    async with connected(alice) as owner, connected(bob) as member:
        session_id = await joined_pair(owner, member)
        await owner.ok("invite", {"username": "carol", "role": "viewer"})
        members = await member.push("members")
        assert members["data"] == {
            "session": session_id,
            "members": [
                {**who(alice), "role": "owner"},
                {**who(bob), "role": "editor"},
                {**who(carol), "role": "viewer"},
            ],
        }
        await owner.ok("remove", {"username": "carol"})
        assert len((await member.push("members"))["data"]["members"]) == 2
        assert await owner.nothing()  # the owner's connection has the reply


async def test_rename_changes_the_title_for_every_member(alice, bob) -> None:
    async with connected(alice) as owner, connected(alice) as tab2, connected(bob) as member:
        session_id = await joined_pair(owner, member)
        tab2.pushes.clear()
        assert await owner.ok("rename", {"title": "Renamed"}) == {"id": session_id, "title": "Renamed"}
        for connection in (tab2, member):
            renamed = await connection.push("session_renamed")
            assert renamed["data"] == {"session": session_id, "title": "Renamed", "by": who(alice)}
        assert await owner.nothing()
        assert (await member.ok("join", {"session": session_id}))["title"] == "Renamed"
        assert (await error(member, "rename", {"title": "Mine"}))["code"] == "permission_denied"
        assert (await error(owner, "rename", {"title": ""}))["code"] == "invalid_data"


async def test_a_title_changed_through_the_orm_is_pushed_too(alice, bob) -> None:
    async with connected(alice) as owner, connected(bob) as member:
        session_id = await joined_pair(owner, member)

        @database_sync_to_async
        def rename() -> None:
            session = Session.objects.get(pk=session_id)
            session.title = "From the admin"
            session.save()

        await rename()
        for connection in (owner, member):
            renamed = await connection.push("session_renamed")
            assert renamed["data"] == {"session": session_id, "title": "From the admin", "by": None}


async def test_a_connection_an_app_put_in_the_accounts_group_gets_no_other_users_pushes(registry, alice, bob) -> None:
    @state("test-join-group")
    async def join_group(conn, data):
        await conn.channel_layer.group_add(data["group"], conn.channel_name)
        return {}

    async with connected(alice) as owner, connected(bob) as snoop:
        await snoop.ok("test-join-group", {"group": events.ACCOUNTS_GROUP})
        await owner.ok("create", {"title": "Secret salary review", "data": {}})
        await owner.ok("create", {"title": "Another", "data": {}})
        assert await snoop.nothing(), snoop.pushes


# --- the invite picker (12.3) ----------------------------------------------------------------------


async def test_contacts_are_the_users_sharing_a_session_with_the_caller_and_no_one_else(alice, bob, carol) -> None:
    async with connected(alice) as owner, connected(carol) as stranger:
        assert await owner.ok("contacts") == {"users": []}  # nobody shares a session with alice yet
        await owner.ok("create", {"title": "Shared", "data": {}})
        await owner.ok("invite", {"username": "bob", "role": "viewer"})
        assert await owner.ok("contacts", {"prefix": ""}) == {"users": [who(bob)]}
        assert await owner.ok("contacts", {"prefix": "B"}) == {"users": [who(bob)]}  # any case
        assert await owner.ok("contacts", {"prefix": "c"}) == {"users": []}  # carol exists, shares nothing
        assert await stranger.ok("contacts") == {"users": []}
        await owner.ok("create", {"title": "Another", "data": {}})
        await owner.ok("invite", {"username": "bob", "role": "editor"})
        assert await owner.ok("contacts") == {"users": [who(bob)]}, "once each"
        assert (await error(owner, "contacts", {"prefix": "x" * 151}))["code"] == "invalid_data"
        assert (await error(owner, "contacts", {"prefix": 7}))["code"] == "invalid_data"


async def test_contacts_leave_out_deactivated_users_and_are_bounded(alice, bob, django_user_model) -> None:
    async with connected(alice) as owner:
        await owner.ok("create", {"title": "Big", "data": {}})

        @database_sync_to_async
        def many() -> None:
            session = Session.objects.get(title="Big")
            for n in range(25):
                user = django_user_model.objects.create_user(f"member{n:02}")  # no password: no hashing
                Membership.objects.create(session=session, user=user, role="viewer")
            django_user_model.objects.filter(username="member00").update(is_active=False)

        await many()
        users = (await owner.ok("contacts", {"prefix": "member"}))["users"]
        assert [u["username"] for u in users] == [f"member{n:02}" for n in range(1, 21)]
