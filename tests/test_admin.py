"""The back office: sessions with members inline, read-only history, search, filters, presence."""

import uuid
from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from sessions_app import presence, selectors, services
from sessions_app.models import Connection, ServerProcess, Session
from tests.utils import access_for, open_socket, refresh_for

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:sessions_app_session_changelist")


@pytest.fixture
def staff(client: Any, django_user_model: Any) -> Any:
    # No password: force_login needs none, and hashing one is most of a test's time.
    client.force_login(django_user_model.objects.create(username="root", is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def people(django_user_model: Any) -> dict[str, dict[str, Any]]:
    return {
        name: selectors.user_summary(django_user_model.objects.create(username=name))
        for name in ("alice", "bob", "carol")
    }


def make_session(owner: dict[str, Any], title: str) -> Session:
    outcome = services.session_create(user=owner, channel_name="", title=title, data={"k": "v"})
    return Session.objects.get(pk=outcome.session_id)


def listed(response: Any) -> list[str]:
    assert response.status_code == 200
    return sorted(session.title for session in response.context["cl"].result_list)


def test_the_session_changelist_lists_every_session(staff: Any, people: Any) -> None:
    make_session(people["alice"], "Roadmap")
    make_session(people["bob"], "Budget")
    response = staff.get(CHANGELIST)
    assert listed(response) == ["Budget", "Roadmap"]
    assert b"present now" in response.content


def test_the_session_changelist_searches_titles_and_owner_usernames(staff: Any, people: Any) -> None:
    make_session(people["alice"], "Roadmap 2027")
    make_session(people["bob"], "Budget")
    make_session(people["carol"], "Bob's party")
    assert listed(staff.get(CHANGELIST, {"q": "roadmap"})) == ["Roadmap 2027"]
    assert listed(staff.get(CHANGELIST, {"q": "bob"})) == ["Bob's party", "Budget"]
    assert listed(staff.get(CHANGELIST, {"q": "nothing-like-this"})) == []


def test_the_present_filter_splits_sessions_with_someone_connected(staff: Any, people: Any, settings: Any) -> None:
    busy = make_session(people["alice"], "Busy")
    make_session(people["alice"], "Quiet")
    stale = make_session(people["bob"], "Stale")
    presence.server_heartbeat()
    ServerProcess.objects.create(id="dead", heartbeat_at=timezone.now() - timedelta(days=1))
    Connection.objects.create(
        channel_name="a1", server_id=presence.SERVER_ID, user_id=people["alice"]["id"], session=busy
    )
    Connection.objects.create(channel_name="b1", server_id="dead", user_id=people["bob"]["id"], session=stale)

    assert listed(staff.get(CHANGELIST, {"present": "yes"})) == ["Busy"]
    assert listed(staff.get(CHANGELIST, {"present": "no"})) == ["Quiet", "Stale"]
    response = staff.get(CHANGELIST)
    assert listed(response) == ["Busy", "Quiet", "Stale"]
    assert b"Someone present" in response.content


def test_the_session_change_page_shows_members_inline_and_history_read_only(staff: Any, people: Any) -> None:
    session = make_session(people["alice"], "Roadmap")
    services.member_invite(user=people["alice"], session_id=session.pk, username="bob", role="editor")
    services.session_patch(
        user=people["bob"],
        channel_name="",
        session_id=session.pk,
        version=0,
        ops=[{"op": "add", "path": "/marker", "value": "patched-by-bob"}],
    )
    services.revision_create(user=people["alice"], channel_name="", session_id=session.pk, message="first milestone")
    presence.server_heartbeat()
    Connection.objects.create(
        channel_name="b1", server_id=presence.SERVER_ID, user_id=people["bob"]["id"], session=session
    )

    response = staff.get(reverse("admin:sessions_app_session_change", args=[session.pk]))

    assert response.status_code == 200
    inlines = {inline.formset.prefix: inline for inline in response.context["inline_admin_formsets"]}
    assert set(inlines) == {"memberships", "revisions", "changes"}
    members = inlines["memberships"]
    assert members.has_add_permission and members.has_change_permission
    assert sorted(form.instance.user.username for form in members.formset.forms) == ["alice", "bob"]
    for prefix in ("revisions", "changes"):
        history = inlines[prefix]
        assert not history.has_add_permission, prefix
        assert not history.has_change_permission, prefix
        assert not history.formset.can_delete, prefix
    assert [form.instance.number for form in inlines["revisions"].formset.forms] == [1]
    assert [form.instance.version for form in inlines["changes"].formset.forms] == [1]

    page = response.content.decode()
    assert "first milestone" in page
    assert "patched-by-bob" in page
    assert 'name="revisions-0-message"' not in page  # shown, not editable
    assert 'name="changes-0-ops"' not in page
    assert 'name="revisions-0-DELETE"' not in page
    assert 'name="memberships-0-role"' in page
    assert response.context["adminform"].form.instance.pk == session.pk
    assert "bob" in page  # present now


def test_the_admin_change_page_of_an_unknown_session_redirects(staff: Any) -> None:
    response = staff.get(reverse("admin:sessions_app_session_change", args=[uuid.uuid4()]))
    assert response.status_code == 302


def test_the_user_admin_changelist_loads(staff: Any, people: Any) -> None:
    response = staff.get(reverse("admin:auth_user_changelist"), {"q": "ali"})
    assert response.status_code == 200
    assert [user.username for user in response.context["cl"].result_list] == ["alice"]


def test_the_connection_admin_changelist_loads_read_only(staff: Any, people: Any) -> None:
    session = make_session(people["alice"], "Roadmap")
    presence.server_heartbeat()
    Connection.objects.create(
        channel_name="a1", server_id=presence.SERVER_ID, user_id=people["alice"]["id"], session=session
    )
    response = staff.get(reverse("admin:sessions_app_connection_changelist"))
    assert response.status_code == 200
    assert [c.channel_name for c in response.context["cl"].result_list] == ["a1"]
    assert staff.get(reverse("admin:sessions_app_connection_add")).status_code == 403


def test_the_admin_is_for_staff_only(client: Any, people: Any) -> None:
    response = client.get(CHANGELIST)
    assert response.status_code == 302
    assert reverse("admin:login") in response["Location"]


# --- live connections: what the admin does reaches the sockets (issue 11 items 4 and 6) ------------


def form_data(response: Any) -> dict[str, Any]:
    """The POST data of an admin change page as it was rendered: the form and every inline."""
    data: dict[str, Any] = {}
    forms = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        management = formset.management_form
        data.update({management.add_prefix(name): value for name, value in management.initial.items()})
        forms += formset.forms
    for form in forms:
        for name, field in form.fields.items():
            value = form[name].value()
            if value is not None and not field.disabled:
                data[form.add_prefix(name)] = value
    return data


async def live_pair(alice: Any, bob: Any) -> tuple[Any, Any, str]:
    """alice owns a session, bob is an editor; both are joined (connected clients, not closed here)."""
    owner = await open_connected(alice)
    member = await open_connected(bob)
    session_id = (await owner.ok("create", {"title": "Shared", "data": {}}))["id"]
    await owner.ok("invite", {"username": "bob", "role": "editor"})
    await member.ok("join", {"session": session_id})
    await owner.push("presence")
    owner.pushes.clear()
    member.pushes.clear()
    return owner, member, session_id


async def open_connected(user: Any) -> Any:
    client = await open_socket()
    await client.send({"token": access_for(user)})
    first = await client.recv()
    assert first["state"] == "initialised", first
    client.user = first["data"]["user"]
    return client


async def ended(client: Any, reason: str) -> None:
    """The socket gets ``not_authenticated`` with ``data.reason`` (after any pushes) and closes 4401."""
    frame = await client.recv()
    while frame["state"] != "error":
        frame = await client.recv()
    assert (frame["state"], frame["code"], frame.get("data")) == ("error", "not_authenticated", {"reason": reason})
    assert await client.closed() == 4401


@pytest.fixture
def operator(client: Any, django_user_model: Any) -> Any:
    """A logged-in superuser's test client, for tests with live sockets (transactional database)."""
    client.force_login(django_user_model.objects.create(username="operator", is_staff=True, is_superuser=True))
    return client


@pytest.mark.django_db(transaction=True)
async def test_the_connections_disconnect_action_closes_the_socket_and_presence_follows(operator, alice, bob):
    owner, member, _ = await live_pair(alice, bob)
    try:
        (row,) = [c async for c in Connection.objects.filter(user=bob)]
        url = reverse("admin:sessions_app_connection_changelist")
        response = await database_sync_to_async(operator.post)(
            url, {"action": "disconnect", "_selected_action": [row.pk]}, follow=True
        )
        assert response.status_code == 200
        assert "Disconnected 1 connection" in response.content.decode()
        await ended(member, "disconnected")
        await member.ws.disconnect()  # the client's side of the close handshake, as daphne reports it
        left = await owner.push("presence")
        assert left["data"]["left"] == {"id": bob.pk, "username": "bob"}
        assert not await Connection.objects.filter(user=bob).aexists()  # the socket's cleanup removed it
        await owner.ok("ping")
    finally:
        await owner.ws.disconnect()
        await member.ws.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_the_connections_page_offers_no_row_only_delete(operator, alice):
    client = await open_connected(alice)
    try:
        (row,) = [c async for c in Connection.objects.filter(user=alice)]
        changelist = await database_sync_to_async(operator.get)(reverse("admin:sessions_app_connection_changelist"))
        actions = [choice[0] for choice in changelist.context["action_form"].fields["action"].choices]
        assert "disconnect" in actions and "delete_selected" not in actions
        delete = await database_sync_to_async(operator.post)(
            reverse("admin:sessions_app_connection_delete", args=[row.pk]), {"post": "yes"}
        )
        assert delete.status_code == 403
        assert await client.nothing()
        await client.ok("ping")
    finally:
        await client.ws.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_the_users_disconnect_everywhere_action_closes_every_socket_and_revokes_sign_ins(operator, alice, bob):
    refresh = await database_sync_to_async(refresh_for)(alice)
    first, second, other = await open_connected(alice), await open_connected(alice), await open_connected(bob)
    try:
        response = await database_sync_to_async(operator.post)(
            reverse("admin:auth_user_changelist"),
            {"action": "disconnect_everywhere", "_selected_action": [alice.pk]},
            follow=True,
        )
        assert response.status_code == 200
        for client in (first, second):
            await ended(client, "disconnected")
        await other.ok("ping")
        refused = await database_sync_to_async(APIClient().post)("/api/v1/token/refresh/", {"refresh": refresh})
        assert refused.status_code == 401
    finally:
        for client in (first, second, other):
            await client.ws.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_deleting_a_member_in_the_session_admin_removes_them_from_the_live_session(operator, alice, bob):
    owner, member, session_id = await live_pair(alice, bob)
    try:
        url = reverse("admin:sessions_app_session_change", args=[session_id])
        page = await database_sync_to_async(operator.get)(url)
        data = form_data(page)
        bob_row = next(k for k, v in data.items() if k.endswith("-user") and v == bob.pk)
        data[bob_row.removesuffix("-user") + "-DELETE"] = "on"
        data["title"] = "Renamed in the admin"
        response = await database_sync_to_async(operator.post)(url, data)
        assert response.status_code == 302, response.context["errors"] if response.context else response
        removed = await member.push("session_removed")
        assert removed["data"] == {"session": session_id, "reason": "removed", "by": None}
        renamed = await owner.push("session_renamed")
        assert renamed["data"] == {"session": session_id, "title": "Renamed in the admin", "by": None}
        assert (await owner.push("presence"))["data"]["left"]["username"] == "bob"
        await owner.ok("patch", {"version": 0, "ops": [{"op": "add", "path": "/a", "value": 1}]})
        assert await member.nothing()
    finally:
        await owner.ws.disconnect()
        await member.ws.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_deleting_a_session_in_the_admin_ends_its_live_connections(operator, alice, bob):
    owner, member, session_id = await live_pair(alice, bob)
    try:
        url = reverse("admin:sessions_app_session_delete", args=[session_id])
        response = await database_sync_to_async(operator.post)(url, {"post": "yes"})
        assert response.status_code == 302
        for client in (owner, member):
            removed = await client.push("session_removed")
            assert removed["data"] == {"session": session_id, "reason": "deleted", "by": None}
            assert (await client.request("presence"))["code"] == "not_joined"
    finally:
        await owner.ws.disconnect()
        await member.ws.disconnect()
