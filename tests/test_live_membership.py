"""Membership pushes, ended sockets and an operator's disconnect across two daphne processes on a
private Redis (issue 11 items 4 to 6, issue 12 item 2).

The owner is on one process and the member on the other; changes come from the socket, from a
third process writing through the ORM (``manage.py shell``, as the admin on any process would), from
the token API and from the admin over HTTP.
"""

import pytest

from tests import live
from tests.adminhttp import Admin

try:  # the WebSocket client moved from tests/live.py to tests/wsclient.py on main (branch infra)
    from tests import wsclient
except ImportError:
    wsclient = live

pytestmark = [pytest.mark.redis, pytest.mark.slow]

ADD = [{"op": "add", "path": "/a", "value": 1}]
TIMEOUT = 10.0


@pytest.fixture
def cluster(tmp_path):
    """A private Redis, a SQLite database and two daphne processes on them: ``(first, second, env)``,
    ``env`` being the environment a ``manage.py`` on the same database and Redis runs with."""
    with live.processes(tmp_path) as started:
        redis = started.redis()
        database = started.sqlite()
        first, second = (started.daphne(database, redis.url) for _ in range(2))
        yield first, second, live.base_env(database, redis.url), database
        for server in (first, second):
            assert "Traceback" not in server.log(), server.log()


async def ended(client: wsclient.Client, reason: str) -> None:
    error = await client.push("error", timeout=TIMEOUT)
    assert (error["code"], error.get("data")) == ("not_authenticated", {"reason": reason}), error
    assert await client.closed(TIMEOUT) == 4401


async def test_membership_pushes_cross_processes_whoever_makes_the_change(cluster):
    first, second, env, _ = cluster
    async with wsclient.clients() as opened:
        alice = await wsclient.login(first.ws, first.token("alice"))
        bob = await wsclient.login(second.ws, second.token("bob"))
        opened.extend([alice, bob])
        session = await alice.ok("create", {"title": "Across", "data": {}})

        # An invite reaches bob's open connection on the other process, joined to nothing.
        await alice.ok("invite", {"username": "bob", "role": "editor"})
        added = await bob.push("session_added", TIMEOUT)
        assert (added["data"]["session"], added["data"]["role"]) == (session["id"], "editor")
        await bob.ok("join", {"session": session["id"]})
        await alice.push("presence", TIMEOUT, where=lambda d: "joined" in d)

        # A demotion takes effect on bob's live connection: his next patch is refused.
        await alice.ok("invite", {"username": "bob", "role": "viewer"})
        assert (await bob.push("role_changed", TIMEOUT))["data"]["role"] == "viewer"
        assert (await bob.request("patch", {"version": 0, "ops": ADD}))["code"] == "permission_denied"

        # A rename made through the ORM by a third process reaches both.
        live.manage(env, "shell", "-c", _shell_rename(session["id"], "Renamed elsewhere"))
        for client in (alice, bob):
            renamed = await client.push("session_renamed", TIMEOUT)
            assert renamed["data"] == {"session": session["id"], "title": "Renamed elsewhere", "by": None}

        # Removal: bob is told and leaves at once; alice sees him leave; no more pushes for him.
        await alice.ok("remove", {"username": "bob"})
        removed = await bob.push("session_removed", TIMEOUT)
        assert removed["data"] == {"session": session["id"], "reason": "removed", "by": alice.user}
        left = await alice.push("presence", TIMEOUT, where=lambda d: "left" in d)
        assert left["data"]["left"] == bob.user
        await alice.ok("patch", {"version": 0, "ops": ADD})
        await bob.no_push("patched", 0.5)
        assert (await bob.request("presence"))["code"] == "not_joined"

        # A session deleted through the ORM elsewhere: alice, joined on the first process, leaves it.
        live.manage(env, "shell", "-c", _shell_delete_session(session["id"]))
        deleted = await alice.push("session_removed", TIMEOUT)
        assert deleted["data"] == {"session": session["id"], "reason": "deleted", "by": None}
        assert (await alice.request("presence"))["code"] == "not_joined"


async def test_a_password_change_a_sign_out_and_an_operator_end_sockets_on_the_other_process(cluster):
    first, second, env, database = cluster
    live.manage(env, "shell", "-c", _shell_make_staff("erin"))
    async with wsclient.clients() as opened:
        alice = await wsclient.login(first.ws, first.token("alice"))
        bob = await wsclient.login(second.ws, second.token("bob"))
        carol = await wsclient.login(second.ws, second.token("carol"))
        dave_tokens = first.token_pair("dave")
        dave = await wsclient.login(second.ws, dave_tokens["access"])
        opened.extend([alice, bob, carol, dave])
        session = await alice.ok("create", {"title": "Watched", "data": {}})
        await alice.ok("invite", {"username": "bob", "role": "editor"})
        await bob.ok("join", {"session": session["id"]})
        await alice.push("presence", TIMEOUT, where=lambda d: "joined" in d)

        # A password changed by a third process (set_password, save).
        live.manage(env, "shell", "-c", _shell_set_password("carol", "a-New-Password-31"))
        await ended(carol, "password_changed")

        # Signing out on the first process ends dave's socket on the second.
        status, _ = live.http_json(first.http + "/api/v1/token/revoke/", {"refresh": dave_tokens["refresh"]})
        assert status == 200
        await ended(dave, "logged_out")

        # The admin on the first process disconnects bob's connection, held by the second.
        (channel,) = live.sqlite_query(
            database,
            "SELECT c.channel_name FROM sessions_app_connection c JOIN auth_user u ON u.id = c.user_id"
            " WHERE u.username = 'bob'",
        )[0:1]
        admin = Admin(first.http, "erin", live.PASSWORD)
        page = admin.action("/admin/sessions_app/connection/", "disconnect", [channel[0]])
        assert "Disconnected 1 connection(s)." in page
        await ended(bob, "disconnected")
        left = await alice.push("presence", TIMEOUT, where=lambda d: "left" in d)
        assert left["data"]["left"] == bob.user

        # Disconnect everywhere: bob's sockets on both processes end, and his sign-in is revoked.
        bob_tokens = second.token_pair("bob")
        again = [await wsclient.login(server.ws, bob_tokens["access"]) for server in (first, second)]
        opened.extend(again)
        (bob_id,) = live.sqlite_query(database, "SELECT id FROM auth_user WHERE username = 'bob'")[0]
        page = admin.action("/admin/auth/user/", "disconnect_everywhere", [bob_id])
        assert "Disconnected 1 user(s) everywhere" in page
        for client in again:
            await ended(client, "disconnected")
        status, _ = live.http_json(first.http + "/api/v1/token/refresh/", {"refresh": bob_tokens["refresh"]})
        assert status == 401
        await alice.ok("ping")


def _shell_rename(session_id: str, title: str) -> str:
    return (
        "from sessions_app.models import Session\n"
        f"session = Session.objects.get(pk={session_id!r})\n"
        f"session.title = {title!r}\n"
        "session.save()\n"
    )


def _shell_delete_session(session_id: str) -> str:
    return f"from sessions_app.models import Session\nSession.objects.get(pk={session_id!r}).delete()\n"


def _shell_set_password(username: str, password: str) -> str:
    return (
        "from django.contrib.auth import get_user_model\n"
        f"user = get_user_model().objects.get(username={username!r})\n"
        f"user.set_password({password!r})\n"
        "user.save()\n"
    )


def _shell_make_staff(username: str) -> str:
    return (
        "from django.contrib.auth import get_user_model\n"
        f"get_user_model().objects.filter(username={username!r}).update(is_staff=True, is_superuser=True)\n"
    )
