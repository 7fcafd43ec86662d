"""The request envelope on a live socket: every error of protocol section 6 that a frame can cause,
id echo, ordering, and the connection surviving each non-fatal error.
"""

import json
import logging
import uuid

import pytest
from django.test import override_settings

from sessions_app.registry import state
from tests.utils import connected

pytestmark = pytest.mark.django_db(transaction=True)

LONG = 12345678901234567890  # 20 digits: the frame takes the exact (stdlib) JSON parser


_NO_FRAME = object()


async def error_for(client, text=None, *, frame=_NO_FRAME, code):
    """Send ``text`` (or ``frame`` as JSON); the next frame must be an error of ``code``; the socket
    must then still answer a ping."""
    if frame is not _NO_FRAME:
        text = json.dumps(frame)
    await client.send_text(text)
    error = await client.recv()
    assert error["state"] == "error", (text, error)
    assert error["code"] == code, (text, error)
    assert isinstance(error["error"], str)
    assert error["error"]
    await client.ok("ping")
    return error


# --- invalid_json ------------------------------------------------------------------------------------


NOT_JSON = [
    "{",
    "not json",
    '{"state": "ping",}',
    "{'state': 'ping'}",
    '{"state": "ping"} {"state": "ping"}',
    '{"state": "ping", "data": {"x": NaN}}',
    '{"state": "ping", "data": {"x": Infinity}}',
    '{"state": "ping", "data": {"x": -Infinity}}',
    '{"state": "ping", "data": {"x": 1e400}}',
    f'{{"state": "ping", "data": {{"x": NaN, "n": {LONG}}}}}',
    f'{{"state": "ping", "data": {{"x": 1e400, "n": {LONG}}}}}',
    '{"state": "ping", "data": {"s": "\\ud800"}}',
    "\x00",
    " ",
]


async def test_a_frame_that_is_not_json_gets_invalid_json_and_the_socket_stays_open(alice):
    async with connected(alice) as client:
        for text in NOT_JSON:
            error = await error_for(client, text, code="invalid_json")
            assert "id" not in error, text
            assert "request_state" not in error, text


async def test_a_lone_surrogate_next_to_a_long_integer_gets_invalid_json(alice, registry):
    # The same lone surrogate is invalid_json without the long integer; the exact parser used for
    # long integers must not let it through (it cannot be stored or sent back as UTF-8).
    @state("test-echo")
    async def echo(conn, data):
        return dict(data)

    async with connected(alice) as client:
        await error_for(client, frame={"state": "test-echo", "data": {"s": "\ud800", "n": LONG}}, code="invalid_json")


async def test_an_integer_longer_than_4300_digits_gets_invalid_json_saying_so(alice, registry):
    """docs/protocol.md section 7: integers are exact up to 4300 digits (the CPU a conversion costs
    is quadratic in its length); a longer one, the id included, is refused with a message that
    says why, never the interpreter's own text, and the socket goes on."""

    @state("test-echo")
    async def echo(conn, data):
        return dict(data)

    async with connected(alice) as client:
        for text in (
            '{"state": "ping", "id": 1%s}' % ("0" * 4999),
            '{"state": "test-echo", "data": {"n": -%s}}' % ("9" * 4301),
        ):
            error = await error_for(client, text, code="invalid_json")
            assert error["error"].startswith("The frame holds a number too long to read: an integer of "), error
            assert error["error"].endswith(" digits; at most 4300 are accepted."), error
            assert "sys.set_int_max_str_digits" not in error["error"]
        exact = int("7" * 4300)
        reply = await client.request("test-echo", {"n": exact, "s": "1" * 5000})
        assert reply["data"] == {"n": exact, "s": "1" * 5000}


# --- invalid_message ---------------------------------------------------------------------------------


MALFORMED = [
    [],
    [{"state": "ping"}],
    "ping",
    0,
    None,
    True,
    {},
    {"data": {}},
    {"state": None},
    {"state": 1},
    {"state": ""},
    {"state": "x" * 65},
    {"state": "ping pong"},
    {"state": "ping", "data": None},
    {"state": "ping", "data": []},
    {"state": "ping", "data": "x"},
    {"state": "ping", "data": 1},
    {"state": "ping", "id": None},
    {"state": "ping", "id": True},
    {"state": "ping", "id": False},
    {"state": "ping", "id": 1.5},
    {"state": "ping", "id": "x" * 65},
    {"state": "ping", "id": 2**63},
    {"state": "ping", "id": ["r1"]},
]


async def test_a_malformed_request_gets_invalid_message_and_the_socket_stays_open(alice):
    async with connected(alice) as client:
        for frame in MALFORMED:
            error = await error_for(client, frame=frame, code="invalid_message")
            assert "id" not in error, frame
            # The state is echoed when it is a valid state name, whatever else is wrong.
            valid_state = isinstance(frame, dict) and frame.get("state") == "ping"
            assert error.get("request_state") == ("ping" if valid_state else None), frame


@pytest.mark.parametrize("frame", [{"state": None, "id": "r1"}, {"state": "ping", "data": None, "id": "r1"}])
async def test_invalid_message_echoes_a_valid_id(alice, frame):
    async with connected(alice) as client:
        error = await error_for(client, frame=frame, code="invalid_message")
        assert error["id"] == "r1"


# --- unsupported_frame -------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [b"\x00\x01", b'{"state": "ping"}'])
async def test_a_binary_frame_gets_unsupported_frame(alice, payload):
    async with connected(alice) as client:
        await client.ws.send_to(bytes_data=payload)
        error = await client.recv()
        assert (error["state"], error["code"]) == ("error", "unsupported_frame")
        await client.ok("ping")


async def test_an_empty_frame_gets_unsupported_frame(alice):
    async with connected(alice) as client:
        await client.ws.send_input({"type": "websocket.receive", "text": ""})
        error = await client.recv()
        assert (error["state"], error["code"]) == ("error", "unsupported_frame")
        await client.ok("ping")


# --- unknown_state -----------------------------------------------------------------------------------


# Consumer methods, ASGI and channel-layer message types, and push or reply states: none is a request.
NOT_STATES = [
    "disconnect",
    "__init__",
    "__class__",
    "websocket_receive",
    "websocket.receive",
    "websocket_connect",
    "websocket.disconnect",
    "dispatch",
    "close",
    "send",
    "fail",
    "shut",
    "session.push",
    "session_push",
    "user.deactivated",
    "user_deactivated",
    "user.push",
    "user_push",
    "user.disconnect",
    "socket.close",
    "socket_close",
    "end",
    "deliver",
    "initialised",
    "error",
    "token_expiring",
    "no-such-state",
    "PING",
]


async def test_a_state_that_is_not_registered_gets_unknown_state_and_the_socket_stays_open(alice):
    async with connected(alice) as client:
        for name in NOT_STATES:
            error = await client.request(name, {})
            assert (error["state"], error["code"]) == ("error", "unknown_state"), (name, error)
            assert error["request_state"] == name
            assert isinstance(error["error"], str)
            await client.ok("ping")


# --- per-state errors --------------------------------------------------------------------------------


async def test_data_failing_a_state_schema_gets_invalid_data(alice):
    async with connected(alice) as client:
        error = await client.request("authenticate", {})
        assert (error["code"], error["request_state"]) == ("invalid_data", "authenticate")
        assert list(error["errors"]) == ["token"]
        await client.ok("ping")


async def test_a_session_state_without_a_joined_session_gets_not_joined(alice):
    async with connected(alice) as client:
        error = await client.request("patch", {"version": 0, "ops": [{"op": "add", "path": "/a", "value": 1}]})
        assert (error["code"], error["request_state"]) == ("not_joined", "patch")
        await client.ok("ping")


async def test_joining_a_session_that_does_not_exist_gets_not_found(alice):
    async with connected(alice) as client:
        error = await client.request("join", {"session": str(uuid.uuid4())})
        assert (error["code"], error["request_state"]) == ("not_found", "join")
        await client.ok("ping")


# --- message_too_large -------------------------------------------------------------------------------


def ping_of_size(size):
    """A ping frame whose UTF-8 encoding is exactly ``size`` bytes."""
    empty = json.dumps({"state": "ping", "data": {"pad": ""}})
    text = json.dumps({"state": "ping", "data": {"pad": "x" * (size - len(empty))}})
    assert len(text.encode()) == size
    return text


@override_settings(SESSIONS_MAX_MESSAGE_BYTES=1024)
async def test_a_frame_of_exactly_the_limit_is_accepted(alice):
    async with connected(alice) as client:
        await client.send_text(ping_of_size(1024))
        assert (await client.recv())["state"] == "ping"
        await client.send_text(ping_of_size(1000))
        assert (await client.recv())["state"] == "ping"


@override_settings(SESSIONS_MAX_MESSAGE_BYTES=1024)
async def test_a_frame_over_the_limit_gets_message_too_large_and_close_4413(alice):
    async with connected(alice) as client:
        await client.send_text(ping_of_size(1025))
        error = await client.recv()
        assert (error["state"], error["code"]) == ("error", "message_too_large")
        assert await client.closed() == 4413


@override_settings(SESSIONS_MAX_MESSAGE_BYTES=1024)
async def test_the_limit_counts_utf8_bytes_not_characters(alice):
    async with connected(alice) as client:
        text = json.dumps({"state": "ping", "data": {"pad": "€" * 340}}, ensure_ascii=False)
        assert len(text) < 1024 < len(text.encode())
        await client.send_text(text)
        error = await client.recv()
        assert error["code"] == "message_too_large"
        assert await client.closed() == 4413


@override_settings(SESSIONS_MAX_MESSAGE_BYTES=1024)
async def test_an_oversized_frame_that_is_not_json_still_gets_message_too_large(alice):
    async with connected(alice) as client:
        await client.send_text("{" * 2000)
        assert (await client.recv())["code"] == "message_too_large"
        assert await client.closed() == 4413


@override_settings(SESSIONS_MAX_MESSAGE_BYTES=1024)
async def test_frames_after_a_too_large_one_get_no_answer(alice):
    async with connected(alice) as client:
        await client.send_text(ping_of_size(2048))
        await client.send({"state": "ping", "id": "after"})
        assert (await client.recv())["code"] == "message_too_large"
        assert await client.closed() == 4413
        assert await client.nothing()


# --- rate_limited ------------------------------------------------------------------------------------


@override_settings(SESSIONS_RATE_LIMIT=0.5, SESSIONS_RATE_BURST=3)
async def test_frames_over_the_burst_get_rate_limited_and_the_socket_stays_open(alice):
    async with connected(alice) as client:
        for index in range(4):
            await client.send({"state": "ping", "id": index})
        replies = [await client.recv() for _ in range(4)]
        assert [reply["state"] for reply in replies] == ["ping", "ping", "ping", "error"]
        assert replies[3]["code"] == "rate_limited"
        assert replies[3]["id"] == 3
        assert replies[3].get("request_state") in (None, "ping")
        assert await client.nothing()


@override_settings(SESSIONS_RATE_LIMIT=20, SESSIONS_RATE_BURST=2)
async def test_a_rate_limited_client_that_slows_down_is_served_again(alice):
    async with connected(alice) as client:
        for index in range(3):
            await client.send({"state": "ping", "id": index})
        assert [(await client.recv())["state"] for _ in range(3)] == ["ping", "ping", "error"]
        assert await client.nothing(0.2)  # 4 frames' worth of refill at 20 a second
        await client.ok("ping")


@override_settings(SESSIONS_RATE_LIMIT=0.5, SESSIONS_RATE_BURST=3)
async def test_a_client_that_keeps_flooding_is_closed_with_4429(alice):
    async with connected(alice) as client:
        for index in range(20):
            await client.send({"state": "ping", "id": index})
        code = await client.closed()
        assert code == 4429
        states = [frame["state"] for frame in client.pushes]
        errors = [frame["code"] for frame in client.pushes if frame["state"] == "error"]
        assert states[:3] == ["ping", "ping", "ping"]
        assert errors and set(errors) == {"rate_limited"}
        assert len(client.pushes) < 20
        assert await client.nothing()


# --- server_error ------------------------------------------------------------------------------------


async def test_an_exception_in_a_handler_gets_server_error_and_is_logged_with_its_traceback(alice, registry, caplog):
    @state("test-boom")
    async def boom(conn, data):
        raise RuntimeError("secret internal detail")

    async with connected(alice) as client:
        with caplog.at_level(logging.ERROR, logger="sessions_app"):
            error = await client.request("test-boom", {"a": 1})
        assert error["state"] == "error"
        assert error["code"] == "server_error"
        assert error["request_state"] == "test-boom"
        assert isinstance(error["error"], str)
        assert "secret internal detail" not in error["error"]
        assert "Traceback" not in json.dumps(error)
        records = [record for record in caplog.records if record.exc_info]
        assert records, caplog.text
        assert records[0].exc_info[0] is RuntimeError
        assert "secret internal detail" in caplog.text
        await client.ok("ping")
        second = await client.request("test-boom")
        assert second["code"] == "server_error"
        await client.ok("ping")


# --- id echo and ordering ----------------------------------------------------------------------------


IDS = ["r-17", "", "x" * 64, "é€", 0, 7, -1, 2**63 - 1, -(2**63)]


async def test_a_reply_echoes_the_request_id_unchanged(alice):
    async with connected(alice) as client:
        for request_id in IDS:
            await client.send({"state": "ping", "id": request_id})
            reply = await client.recv()
            assert reply["state"] == "ping"
            assert reply["id"] == request_id
            assert type(reply["id"]) is type(request_id)


async def test_an_error_echoes_the_request_id_unchanged(alice):
    async with connected(alice) as client:
        for request_id in IDS:
            await client.send({"state": "no-such-state", "id": request_id})
            error = await client.recv()
            assert (error["state"], error["code"]) == ("error", "unknown_state")
            assert error["id"] == request_id
            assert type(error["id"]) is type(request_id)


async def test_a_reply_without_a_request_id_has_no_id(alice):
    async with connected(alice) as client:
        await client.send({"state": "ping"})
        reply = await client.recv()
        assert set(reply) == {"state", "data"}


async def test_thirty_pings_come_back_in_order(alice):
    async with connected(alice) as client:
        for index in range(30):
            await client.send({"state": "ping", "id": index})
        replies = [await client.recv() for _ in range(30)]
        assert [reply["id"] for reply in replies] == list(range(30))
        assert {reply["state"] for reply in replies} == {"ping"}
        assert await client.nothing()


async def test_replies_and_errors_come_back_in_request_order(alice):
    async with connected(alice) as client:
        await client.send({"state": "ping", "id": 1})
        await client.send({"state": "nope", "id": 2})
        await client.send_text("{")
        await client.send({"state": "ping", "id": 4})
        await client.send({"state": "ping", "data": None, "id": 5})
        await client.send({"state": "ping", "id": 6})
        frames = [await client.recv() for _ in range(6)]
        assert [(frame["state"], frame.get("code"), frame.get("id")) for frame in frames] == [
            ("ping", None, 1),
            ("error", "unknown_state", 2),
            ("error", "invalid_json", None),
            ("ping", None, 4),
            ("error", "invalid_message", 5),
            ("ping", None, 6),
        ]


# --- the connection survives every non-fatal error ---------------------------------------------------


async def test_the_connection_survives_every_non_fatal_error_in_a_row(alice):
    async with connected(alice) as client:
        await client.send_text("{")
        assert (await client.recv())["code"] == "invalid_json"
        await client.ok("ping")
        await client.send_text('{"x": NaN}')
        assert (await client.recv())["code"] == "invalid_json"
        await client.ok("ping")
        await client.send([])
        assert (await client.recv())["code"] == "invalid_message"
        await client.ok("ping")
        await client.send({"state": "ping", "data": None})
        assert (await client.recv())["code"] == "invalid_message"
        await client.ok("ping")
        await client.ws.send_to(bytes_data=b"\x00")
        assert (await client.recv())["code"] == "unsupported_frame"
        await client.ok("ping")
        await client.ws.send_input({"type": "websocket.receive", "text": ""})
        assert (await client.recv())["code"] == "unsupported_frame"
        await client.ok("ping")
        assert (await client.request("disconnect"))["code"] == "unknown_state"
        await client.ok("ping")
        assert (await client.request("authenticate", {"token": 5}))["code"] == "invalid_data"
        await client.ok("ping")
        assert (await client.request("presence"))["code"] == "not_joined"
        await client.ok("ping")
        assert (await client.request("join", {"session": str(uuid.uuid4())}))["code"] == "not_found"
        await client.ok("ping")
        assert await client.nothing()


# --- close 1000 --------------------------------------------------------------------------------------


async def test_save_without_a_joined_session_replies_an_empty_object_and_closes_1000(alice):
    async with connected(alice) as client:
        await client.send({"state": "save", "id": "s"})
        assert await client.recv() == {"state": "save", "data": {}, "id": "s"}
        assert await client.closed() == 1000
        await client.send({"state": "ping"})
        assert await client.nothing()
