"""The state registry: registration rules, schema validation, and dispatch through the consumer."""

import asyncio
import datetime
import decimal
import re
import threading
import uuid
from pathlib import Path

import pytest
from rest_framework import serializers

from sessions_app import protocol
from sessions_app.handlers import call
from sessions_app.protocol import ProtocolError
from sessions_app.registry import REGISTRY, State, flatten_errors, state
from sessions_app.serializers import PatchSchema
from tests.utils import connected


class EchoSchema(serializers.Serializer):
    text = serializers.CharField(max_length=5)
    count = serializers.IntegerField(min_value=0, required=False, default=0)


class Inner(serializers.Serializer):
    a = serializers.IntegerField()


class NestedSchema(serializers.Serializer):
    inner = Inner()
    many = Inner(many=True)


class WholeSchema(serializers.Serializer):
    a = serializers.IntegerField()

    def validate(self, attrs):
        raise serializers.ValidationError("The whole request is wrong.")


async def echo(conn, data):
    return dict(data)


# --- registration -----------------------------------------------------------------------------------


def test_the_built_in_states_are_registered():
    assert {"ping", "authenticate", "save"} <= set(REGISTRY)


def test_every_built_in_state_is_in_the_protocol_document_and_the_typescript_declarations():
    root = Path(__file__).resolve().parent.parent
    table = (root / "docs" / "protocol.md").read_text()
    declarations = (root / "static" / "sessions" / "client.d.ts").read_text()
    # The project's own states only: an app's states are documented by the app (README, "Adding a
    # state"), and its tests must not have to edit this project's files.
    built_in = [name for name, entry in REGISTRY.items() if entry.handler.__module__.startswith("sessions_app.")]
    assert len(built_in) >= 17
    for name in built_in:
        assert f"| `{name}` |" in table, f"{name} is not in docs/protocol.md's table of states"
        assert re.search(rf"^  {re.escape(name)}: {{ data:", declarations, re.M), f"{name} is not in client.d.ts"


def test_registering_a_state_adds_its_handler_schema_and_session_need(registry):
    returned = state("test-echo", schema=EchoSchema, needs_session=True)(echo)
    assert returned is echo
    entry = registry["test-echo"]
    assert entry == State("test-echo", echo, EchoSchema, True)


def test_a_state_without_a_schema_needs_no_session_by_default(registry):
    state("test-plain")(echo)
    assert registry["test-plain"].schema is None
    assert registry["test-plain"].needs_session is False


def test_registering_a_name_twice_raises_value_error_and_keeps_the_first(registry):
    state("test-twice")(echo)

    async def other(conn, data):
        return {}

    with pytest.raises(ValueError, match="test-twice"):
        state("test-twice")(other)
    assert registry["test-twice"].handler is echo


def test_registering_a_built_in_name_again_raises_value_error(registry):
    ping = registry["ping"]
    with pytest.raises(ValueError):
        state("ping")(echo)
    assert registry["ping"] is ping


@pytest.mark.parametrize("name", ["", "a b", "a/b", "x" * 65, "pïng", "ping\n", "a:b"])
def test_registering_an_invalid_name_raises_value_error(registry, name):
    with pytest.raises(ValueError):
        state(name)
    assert name not in registry


@pytest.mark.parametrize("name", ["error", "initialised"])
def test_the_states_of_the_servers_own_frames_are_reserved(registry, name):
    with pytest.raises(ValueError, match="reserved"):
        state(name)
    assert name not in registry


# --- validation ---------------------------------------------------------------------------------------


def test_validate_without_a_schema_returns_the_data_as_sent():
    data = {"zero": 0, "empty": "", "false": False, "list": [], "null": None}
    assert State("x", echo, None).validate(data) is data


def test_validate_returns_the_validated_data_with_defaults():
    assert State("x", echo, EchoSchema).validate({"text": "hi"}) == {"text": "hi", "count": 0}


def test_validation_errors_become_invalid_data_with_errors_by_field():
    with pytest.raises(ProtocolError) as caught:
        State("x", echo, EchoSchema).validate({"text": "too long", "count": -1})
    exc = caught.value
    assert exc.code == protocol.INVALID_DATA
    assert exc.close_code is None
    assert set(exc.errors) == {"text", "count"}
    assert all(type(message) is str for messages in exc.errors.values() for message in messages)
    assert exc.message.startswith("text: ") or exc.message.startswith("count: ")


def test_a_missing_required_field_is_reported_under_its_name():
    with pytest.raises(ProtocolError) as caught:
        State("x", echo, EchoSchema).validate({})
    assert list(caught.value.errors) == ["text"]


def test_nested_validation_errors_are_flattened_with_dots():
    with pytest.raises(ProtocolError) as caught:
        State("x", echo, NestedSchema).validate({"inner": {"a": "x"}, "many": [{"a": 1}, {"a": "y"}]})
    assert caught.value.errors == {
        "inner.a": ["A valid integer is required."],
        "many.1.a": ["A valid integer is required."],
    }


def test_list_item_errors_are_flattened_with_their_index():
    with pytest.raises(ProtocolError) as caught:
        State("patch", echo, PatchSchema).validate({"version": 1, "ops": [{"op": "add"}, 5]})
    assert list(caught.value.errors) == ["ops.1"]


def test_whole_object_errors_are_reported_under_data():
    with pytest.raises(ProtocolError) as caught:
        State("x", echo, WholeSchema).validate({"a": 1})
    assert caught.value.errors == {"data": ["The whole request is wrong."]}


def test_flatten_errors_keeps_plain_strings_in_lists():
    assert flatten_errors({"a": ["x"], "b": {0: ["y"]}, "c": "z"}) == {"a": ["x"], "b.0": ["y"], "c": ["z"]}


# --- through the consumer -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_a_state_registered_in_a_test_is_reachable_through_the_socket(registry, alice):
    state("test-echo")(echo)
    async with connected(alice) as client:
        reply = await client.request("test-echo", {"text": "hi"})
    assert reply == {"state": "test-echo", "data": {"text": "hi"}, "id": reply["id"]}


@pytest.mark.django_db(transaction=True)
async def test_a_state_gets_its_data_exactly_as_sent(registry, alice):
    state("test-echo")(echo)
    data = {
        "zero": 0,
        "empty": "",
        "false": False,
        "list": [],
        "object": {},
        "null": None,
        "float": 0.0,
        "big": 2**64 + 1,
        "negative-big": -(10**30),
        "text": "é€\U0001f600",
        "nested": {"deep": [0, "", False, None, {"k": []}]},
    }
    async with connected(alice) as client:
        assert await client.ok("test-echo", data) == data


@pytest.mark.django_db(transaction=True)
async def test_a_handler_may_return_uuids_datetimes_and_decimals(registry, alice):
    session = uuid.uuid4()
    moment = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)

    @state("test-values")
    async def values(conn, data):
        return {"session": session, "at": moment, "price": decimal.Decimal("9.90")}

    async with connected(alice) as client:
        reply = await client.ok("test-values")
    assert reply["session"] == str(session)
    assert datetime.datetime.fromisoformat(reply["at"]) == moment
    assert reply["price"] == "9.90"


@pytest.mark.django_db(transaction=True)
async def test_a_state_gets_the_validated_data_of_its_schema(registry, alice):
    state("test-echo", schema=EchoSchema)(echo)
    async with connected(alice) as client:
        assert await client.ok("test-echo", {"text": "hi", "ignored": 1}) == {"text": "hi", "count": 0}


@pytest.mark.django_db(transaction=True)
async def test_data_failing_the_schema_gets_invalid_data_with_field_errors(registry, alice):
    state("test-echo", schema=EchoSchema)(echo)
    async with connected(alice) as client:
        reply = await client.request("test-echo", {"text": "much too long", "count": "x"})
        assert reply["state"] == "error"
        assert reply["code"] == "invalid_data"
        assert reply["request_state"] == "test-echo"
        assert set(reply["errors"]) == {"text", "count"}
        assert isinstance(reply["error"], str)
        await client.ok("ping")


@pytest.mark.django_db(transaction=True)
async def test_a_state_needing_a_session_answers_not_joined_before_checking_its_schema(registry, alice):
    state("test-echo", schema=EchoSchema, needs_session=True)(echo)
    async with connected(alice) as client:
        reply = await client.request("test-echo", {"text": 5})
        assert (reply["state"], reply["code"], reply["request_state"]) == ("error", "not_joined", "test-echo")
        await client.ok("ping")


@pytest.mark.django_db(transaction=True)
async def test_a_state_removed_from_the_registry_is_unknown_again(registry, alice):
    state("test-echo")(echo)
    async with connected(alice) as client:
        await client.ok("test-echo")
        del registry["test-echo"]
        reply = await client.request("test-echo")
        assert reply["code"] == "unknown_state"


@pytest.mark.django_db(transaction=True)
async def test_a_state_can_push_to_its_session_and_to_a_group_of_its_own(registry, alice, bob):
    from sessions_app import events

    @state("test-lobby")
    async def lobby(conn, data):
        await conn.subscribe_group("lobby")
        return {}

    @state("test-cursor")
    async def cursor(conn, data):
        await conn.publish([events.push(conn.session_id, "cursor", {"at": 3}, exclude=conn.channel_name)])
        await conn.publish([events.group_push("lobby", "hello", {"from": conn.user["username"]})])
        return {}

    async with connected(alice) as a, connected(bob) as b:
        session = (await a.ok("create", {"title": "cursors"}))["id"]
        await a.ok("invite", {"username": "bob", "role": "viewer"})
        await b.ok("join", {"session": session})
        await a.push("presence")
        await b.ok("test-lobby")

        await a.ok("test-cursor")
        assert (await b.push("cursor"))["data"] == {"at": 3}
        assert (await b.push("hello"))["data"] == {"from": "alice"}
        assert await a.nothing()  # excluded from its own cursor, and not in the lobby


@pytest.mark.django_db(transaction=True)
async def test_a_reply_that_is_not_json_is_a_server_error_and_the_socket_goes_on(registry, alice, caplog):
    @state("test-set")
    async def not_json(conn, data):
        return {"tags": {"a", "b"}}

    async with connected(alice) as client:
        reply = await client.request("test-set")
        assert reply["state"] == "error" and reply["code"] == "server_error" and reply["id"]
        assert "server_time" in await client.ok("ping")
    assert "returned a reply that is not JSON" in caplog.text


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("result", [None, ["a list"], "text"])
async def test_a_reply_that_is_not_a_dict_is_a_server_error_and_the_socket_goes_on(registry, alice, caplog, result):
    @state("test-forgot-return")
    async def forgot(conn, data):
        return result

    async with connected(alice) as client:
        reply = await client.request("test-forgot-return")
        assert reply["state"] == "error" and reply["code"] == "server_error" and reply["id"]
        assert "server_time" in await client.ok("ping")
    assert "not a dict of reply data" in caplog.text


@pytest.mark.django_db(transaction=True)
async def test_one_users_database_hops_wait_for_each_other_so_others_are_not_queued_behind_them(
    registry, alice, bob
) -> None:
    # The database thread runs hops in the order they are asked for; without a turn per user,
    # alice's second hop would run before bob's, which was asked for after it.
    gate, order = threading.Event(), []

    def held(*, user, label):
        order.append(label)
        if label == "alice 1":
            gate.wait(10)

    @state("test-hop")
    async def hop(conn, data):
        await call(held, user=conn.user, label=data["label"])
        return {}

    async with connected(alice) as first, connected(alice) as second, connected(bob) as other:
        await first.send({"state": "test-hop", "data": {"label": "alice 1"}, "id": "a1"})
        await asyncio.sleep(0.2)  # alice 1 holds the database thread
        await second.send({"state": "test-hop", "data": {"label": "alice 2"}, "id": "a2"})
        await asyncio.sleep(0.2)
        await other.send({"state": "test-hop", "data": {"label": "bob"}, "id": "b"})
        await asyncio.sleep(0.2)
        gate.set()
        for client in (first, second, other):
            assert (await client.recv(5))["state"] == "test-hop"
    assert order == ["alice 1", "bob", "alice 2"]
