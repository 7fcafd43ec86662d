"""Issue 5, item 9: no secret in logs.

All log output is captured while handshakes use valid, invalid, expired and refresh tokens, a
``?token=`` query string, ``authenticate`` renewals and failures, and requests that fail; no token
appears in it, nor any 20-character slice of one. Once in the pytest process (every logger at
DEBUG, SQL logging on) and once from a live daphne's stdout and stderr (its access log on).
"""

import datetime
import json
import logging
import time
import uuid

import jwt
import pytest
from channels.db import database_sync_to_async
from django.test import override_settings

from tests import live, wsclient
from tests.otp_utils import pinned_clock  # noqa: F401 - a fixture
from tests.utils import PATH, access_for, connected, open_socket, refresh_for

SLICE = 20


def leaks(text, tokens):
    """The (token index, slice) pairs of every 20-character slice of a token found in ``text``."""
    found = []
    for index, token in enumerate(tokens):
        for start in range(len(token) - SLICE + 1):
            piece = token[start : start + SLICE]
            if piece in text:
                found.append((index, piece))
                break
    return found


def signed(claims, key):
    return jwt.encode(claims, key, algorithm="HS256")


def forged_tokens(user_id, key):
    """An access token signed with another key, an expired one and one for a user that does not exist."""
    now = int(time.time())
    base = {"token_type": "access", "iat": now, "jti": uuid.uuid4().hex}
    return [
        signed({**base, "exp": now + 300, "user_id": str(user_id)}, "not-the-server-key-" + "x" * 32),
        signed({**base, "exp": now - 60, "iat": now - 400, "user_id": str(user_id)}, key),
        signed({**base, "exp": now + 300, "user_id": "999999"}, key),
    ]


async def handshake(first_frame, *, path=PATH):
    client = await open_socket(path=path)
    try:
        await client.send_text(first_frame)
        return await client.recv()
    finally:
        await client.ws.disconnect()


# --- in the pytest process ----------------------------------------------------------------------


@pytest.fixture
def every_logger_at_debug(caplog):
    """caplog sees every record of every logger, at DEBUG (the project's own loggers included)."""
    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


@pytest.mark.django_db(transaction=True)
async def test_no_token_reaches_the_logs_of_handshakes_renewals_and_errors(every_logger_at_debug, alice, bob, settings):
    caplog = every_logger_at_debug
    valid, renewal, other_user = access_for(alice), access_for(alice), access_for(bob)
    expired = access_for(alice, lifetime=datetime.timedelta(seconds=-30))
    refresh = await database_sync_to_async(refresh_for)(alice)
    forged = forged_tokens(alice.pk, settings.SECRET_KEY)
    tokens = [valid, renewal, other_user, expired, refresh, *forged]

    with override_settings(DEBUG=True):  # SQL statements are logged too (django.db.backends)
        for bad in [expired, refresh, *forged, valid[:-4] + "abcd", valid + "x"]:
            assert (await handshake(json.dumps({"token": bad})))["code"] == "not_authenticated"
        # A token in the query string is ignored (and a frame that is not the token fails).
        answer = await handshake(json.dumps({"state": "ping"}), path=f"{PATH}?token={valid}")
        assert answer["code"] == "not_authenticated"
        assert (await handshake('{"token": "' + valid + '"'))["code"] == "not_authenticated"  # broken JSON

        async with connected(alice, token=valid) as client:
            assert "token_expires_at" in await client.ok("authenticate", {"token": renewal})
            for bad_request in [
                {"state": "nope", "data": {"token": valid}},
                {"state": "join", "data": {"session": valid}},
                {"state": "create", "data": {"title": valid * 2}},
                {"state": "patch", "data": {"version": 0, "ops": [{"op": "add", "path": "/t", "value": valid}]}},
                {"state": "authenticate", "data": {"token": 12345}},
            ]:
                assert (await client.request(bad_request["state"], bad_request["data"]))["state"] == "error"
            await client.send_text('{"state": "ping", "data": {"token": "' + valid + '"')
            assert (await client.recv())["code"] == "invalid_json"
            # (A document that holds a token is the user's content: with DEBUG on, Django's SQL log
            # shows documents, so none is written here.)
            expired_answer = await client.request("authenticate", {"token": expired})
            assert expired_answer["code"] == "not_authenticated"
            assert await client.closed() == 4401
        async with connected(alice, token=valid) as client:
            assert (await client.request("authenticate", {"token": other_user}))["code"] == "not_authenticated"
            assert await client.closed() == 4401

    assert caplog.records, "nothing was logged: the capture is not working"
    # The operator lines (sessions_app.oplog) are among them: outcomes and the errors sent.
    messages = [record.getMessage() for record in caplog.records if record.name == "sessions_app.connections"]
    assert any(m.startswith("connection ended:") and "reason=not_authenticated" in m for m in messages), messages
    assert any(m.startswith("error sent: not_authenticated") for m in messages), messages
    everything = caplog.text + "\n".join(
        f"{record.getMessage()} {record.exc_text or ''} {record.args!r}" for record in caplog.records
    )
    assert leaks(everything, tokens) == []


@pytest.mark.django_db(transaction=True)
async def test_no_magic_link_token_nonce_or_mail_body_reaches_the_logs(every_logger_at_debug, settings):
    """Issue 14: asking for a link, claiming it from another browser, then from the right one,
    again (replay), with a JWT for a token, and the link's token offered to the socket: the
    ``sessions_app.signin`` lines are there, and no token, nonce, address asked for or mail body."""
    from django.contrib.auth import get_user_model
    from django.core import mail
    from rest_framework.test import APIClient

    from sessions_app import mailer
    from sessions_app.magiclinks import NONCE_COOKIE

    caplog = every_logger_at_debug
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    mail.outbox = []

    def flow():
        user = get_user_model().objects.create_user("gina", email="gina@example.com", password="x-unused-password-x")
        page = {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}
        client, other = APIClient(headers=page), APIClient(headers=page)
        assert client.post("/api/v1/login/magic/", {"login": "gina@example.com"}, format="json").status_code == 202
        assert other.post("/api/v1/login/magic/", {"login": "nobody@example.com"}, format="json").status_code == 202
        assert mailer.wait_sent()
        body = mail.outbox[0].body
        fragment = body.split("#", 1)[1].split()[0]
        link, token = (part.split("=", 1)[1] for part in fragment.split("&"))
        claim = {"link": link, "token": token}
        nonces = [c.cookies[NONCE_COOKIE].value for c in (client, other)]
        assert other.post("/api/v1/login/magic/claim/", claim, format="json").status_code == 403
        with override_settings(DEBUG=True):  # the SQL statements too
            answer = client.post("/api/v1/login/magic/claim/", claim, format="json")
        assert answer.status_code == 200
        assert client.post("/api/v1/login/magic/claim/", claim, format="json").status_code == 401
        jwt_claim = {"link": link, "token": answer.json()["access"]}
        assert client.post("/api/v1/login/magic/claim/", jwt_claim, format="json").status_code == 401
        # The link's id is no secret (logged, and shown in the admin); the rest of the body is.
        return user, token, body.replace(link, ""), nonces, answer.json()["access"]

    _user, token, body, nonces, access = await database_sync_to_async(flow)()
    assert (await handshake(json.dumps({"token": token})))["code"] == "not_authenticated"

    everything = caplog.text + "\n".join(
        f"{record.getMessage()} {record.exc_text or ''} {record.args!r}" for record in caplog.records
    )
    assert "signin magic_claimed user=" in everything and "reason=other_browser" in everything
    # (Every JWT starts alike (header, token_type): only the access token's signature is looked for. The
    # refresh token is in Django's SQL log with DEBUG on, as for every sign-in: SimpleJWT's row.)
    assert leaks(everything, [token, *nonces, access.rsplit(".", 1)[1], body]) == []
    assert "gina@example.com" not in everything
    assert "nobody@example.com" not in everything


# --- a live daphne ------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_no_token_reaches_a_live_daphnes_output(started):
    server = started.daphne(started.sqlite(), args=("--access-log", "-", "-v", "2"), LOG_LEVEL="DEBUG")
    pair = server.token_pair("alice")
    renewed = live.http_json(server.http + "/api/v1/token/refresh/", {"refresh": pair["refresh"]})[1]
    bob = server.token("bob")
    alice_id = 1
    forged = forged_tokens(alice_id, live.SECRET_KEY)
    tokens = [pair["access"], pair["refresh"], renewed["access"], renewed["refresh"], bob, *forged]
    # The refresh token already rotated (blacklisted): using it again fails, and is logged by nobody.
    assert live.http_json(server.http + "/api/v1/token/refresh/", {"refresh": pair["refresh"]})[0] == 401

    async with wsclient.clients() as opened:
        for bad in [*forged, pair["refresh"], pair["access"] + "x"]:
            client = await wsclient.open_client(server.ws)
            opened.append(client)
            await client.send({"token": bad})
            assert (await client.recv())["code"] == "not_authenticated"
            assert await client.closed() == 4401
        client = await wsclient.login(server.ws, pair["access"], query=f"?token={pair['access']}")
        opened.append(client)
        assert "token_expires_at" in await client.ok("authenticate", {"token": renewed["access"]})
        assert (await client.request("join", {"session": pair["access"]}))["code"] == "invalid_data"
        await client.ws.send('{"token": "' + bob + '"')
        assert (await client.recv())["code"] == "invalid_json"
        assert (await client.request("authenticate", {"token": bob}))["code"] == "not_authenticated"
        assert await client.closed() == 4401
        client = await wsclient.login(server.ws, renewed["access"])
        opened.append(client)
        client.abort()
    server.stop()  # flush and close its output

    output = server.log()
    assert "WSCONNECT" in output, output[-2000:]  # the access log was on
    assert "/api/v1/token/refresh/" in output
    assert output.count("connection ended:") >= 7, output[-2000:]  # the operator lines were on
    assert "error sent: invalid_json" in output
    assert leaks(output, tokens) == []


# --- two-factor sign-in (issue 14, item 4) -------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.usefixtures("pinned_clock")
def test_sign_in_events_are_logged_without_password_code_secret_ticket_or_token(every_logger_at_debug, settings):
    """Every step of a two-factor sign-in is logged on ``sessions_app.signin`` with the user id and
    the address, and none of the secrets reaches any log. (Not under DEBUG: Django's SQL log then
    shows every INSERT, the device key and the recovery codes among them, as it shows documents.)"""
    from django.contrib.auth import get_user_model
    from django.utils.crypto import get_random_string
    from rest_framework.test import APIClient

    from tests.otp_utils import bearer, code_for, code_sign_in, page, password_sign_in, secret_key

    caplog = every_logger_at_debug
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.OTP_TOTP_THROTTLE_FACTOR = 600
    settings.OTP_STATIC_THROTTLE_FACTOR = 0
    user = get_user_model().objects.create_user("dave", password=get_random_string(20))
    password = get_random_string(24)
    user.set_password(password)
    user.save()

    def sign_in(**extra):
        return APIClient().post("/api/v1/token/", {"username": "dave", "password": password}, format="json", **extra)

    first = sign_in(REMOTE_ADDR="198.51.100.7").json()
    api = bearer(first["access"])
    started = api.post("/api/v1/otp/enrol/").json()
    key = secret_key(started["secret"])
    enrol_code = code_for(key, -1)
    recovery = api.post("/api/v1/otp/confirm/", {"code": enrol_code}, format="json").json()["recovery_codes"]

    ticket = sign_in().json()["ticket"]
    wrong = f"{(int(code_for(key, 0)) + 1) % 1_000_000:06d}"
    assert code_sign_in(ticket, wrong).status_code == 401
    assert code_sign_in(ticket, code_for(key, 0)).status_code == 429  # throttled by the device
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    pair = code_sign_in(ticket, code_for(key, 0)).json()
    cookie_ticket = page().post("/api/v1/token/cookie/", {"username": "dave", "password": password}, format="json")
    cookie_ticket = cookie_ticket.json()["ticket"]
    cookie_answer = code_sign_in(cookie_ticket, recovery[0], cookie=True)
    assert cookie_answer.status_code == 200
    assert code_sign_in(ticket, code_for(key, 1)).status_code == 401  # replayed ticket
    assert password_sign_in("dave").status_code == 401  # (tests.otp_utils' password: a wrong one here)
    fresh = bearer(pair["access"]).post("/api/v1/otp/recovery-codes/", {"code": recovery[1]}, format="json").json()
    assert (
        bearer(pair["access"]).post("/api/v1/otp/remove/", {"code": code_for(key, 1)}, format="json").status_code == 200
    )

    secrets = [
        password,
        started["secret"],
        key.hex(),
        started["otpauth_uri"],
        ticket,
        cookie_ticket,
        *first.values(),
        *pair.values(),
        cookie_answer.json()["access"],
        cookie_answer.cookies["sessions_refresh"].value,
        *recovery,
        *fresh["recovery_codes"],
    ]
    everything = caplog.text + "\n".join(
        f"{record.getMessage()} {record.exc_text or ''} {record.args!r}" for record in caplog.records
    )
    assert leaks(everything, [s for s in secrets if len(s) >= SLICE]) == []
    assert [s for s in secrets if len(s) < SLICE and s in everything] == []
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("sessions_app"))
    for code in (enrol_code, wrong, code_for(key, 0), code_for(key, 1)):
        assert code not in ours

    signin = [r.getMessage() for r in caplog.records if r.name == "sessions_app.signin"]
    events = {message.split()[1] for message in signin}
    assert {
        "password_ok",
        "password_refused",
        "otp_required",
        "otp_enrolment_started",
        "otp_enrolled",
        "otp_ok",
        "otp_refused",
        "otp_throttled",
        "recovery_code_used",
        "ticket_refused",
        "recovery_codes_regenerated",
        "otp_removed",
    } <= events, signin
    assert f"signin password_ok user={user.pk} address=198.51.100.7" in signin
    assert f"signin otp_refused user={user.pk} address=127.0.0.1 purpose=sign_in" in signin


@pytest.mark.slow
def test_no_magic_link_secret_reaches_a_live_daphnes_output(started, tmp_path):
    """A link asked for, claimed from another browser, claimed, and replayed on a live daphne
    (access log on, LOG_LEVEL=DEBUG): its output has the sign-in lines, and no token or nonce."""
    import http.cookiejar
    import re
    import sqlite3
    import urllib.error
    import urllib.request

    folder = tmp_path / "mail"
    folder.mkdir()
    database = started.sqlite()
    with sqlite3.connect(database.removeprefix("sqlite:///")) as conn:
        conn.execute("UPDATE auth_user SET email = 'alice@example.com' WHERE username = 'alice'")
    server = started.daphne(
        database,
        args=("--access-log", "-", "-v", "2"),
        LOG_LEVEL="DEBUG",
        EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
        EMAIL_FILE_PATH=str(folder),
    )

    def browser():
        jar = http.cookiejar.CookieJar()
        return jar, urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

    def post(opener, path, payload):
        request = urllib.request.Request(  # noqa: S310 - loopback test server
            server.http + path,
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json", "Origin": server.http, "Sec-Fetch-Site": "same-origin"},
        )
        try:
            with opener.open(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    jar, mine = browser()
    other_jar, other = browser()
    assert post(mine, "/api/v1/login/magic/", {"login": "alice@example.com"})[0] == 202
    assert post(other, "/api/v1/login/magic/", {"login": "nobody@example.com"})[0] == 202
    nonces = [cookie.value for cookie in [*jar, *other_jar]]
    assert len(nonces) == 2
    found = live.wait_until(
        lambda: re.search(r"#link=([0-9a-f-]+)&sesame=([\w-]+)", "".join(p.read_text() for p in folder.glob("*"))),
        20,
        "the sign-in mail",
    )
    claim = {"link": found[1], "token": found[2]}
    assert post(other, "/api/v1/login/magic/claim/", claim)[0] == 403
    status, answer = post(mine, "/api/v1/login/magic/claim/", claim)
    assert status == 200
    assert post(mine, "/api/v1/login/magic/claim/", claim)[0] == 401
    server.stop()

    output = server.log()
    assert "/api/v1/login/magic/claim/" in output, output[-2000:]  # the access log was on
    assert "signin magic_claimed user=" in output and "reason=other_browser" in output
    assert leaks(output, [found[2], *nonces, answer["access"].rsplit(".", 1)[1]]) == []
    assert "alice@example.com" not in output and "nobody@example.com" not in output
