"""Issue 5, item 8: a hypothesis fuzzer through the consumer (``project.asgi.application``).

Random frames (bytes, text, JSON values, envelopes of real and made-up states, RFC 6902 patches
against random documents) go to an authenticated socket. Invariants, checked after every frame:

- no frame is ever answered with ``server_error``;
- after every error that does not close the socket, the socket still answers ``ping``;
- a session's ``version`` equals the number of patches the server accepted;
- its stored document equals the initial document with the accepted patches applied in order
  (applied here with the jsonpatch library, independently of the server), and a patch is accepted
  exactly when that model accepts it (a stale one after sessions_app/rebase.py rebased it on the
  changes since, with the applied operations in the reply).

Each example runs on a fresh event loop with fresh channel layers, a fresh connection and fresh
sessions; the examples are bounded so that the file runs in well under a minute.
"""

import asyncio
import copy
import json
import uuid

import jsonpatch
import pytest
from channels.layers import channel_layers
from django.contrib.auth import get_user_model
from django.test import override_settings
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from sessions_app.models import Session
from sessions_app.rebase import RebaseConflict, rebase
from tests.utils import access_for, open_socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

FUZZ = settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
# The rate limit is not what is fuzzed here: lift it so that bursts of frames are all handled.
NO_RATE_LIMIT = override_settings(SESSIONS_RATE_LIMIT=100_000, SESSIONS_RATE_BURST=100_000)
FATAL = {"not_authenticated": 4401, "token_expired": 4401, "message_too_large": 4413}
STATES = ["ping", "authenticate", "create", "list", "join", "patch", "presence", "invite", "leave", "save"]
ODD_STATES = ["disconnect", "__init__", "websocket_receive", "session_push", "error", "initialised", "x" * 64]
MAX_DOCUMENT_BYTES = 1_048_576

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=6), json_values, max_size=5)
request_ids = st.none() | st.integers(min_value=-(2**64), max_value=2**64) | st.text(max_size=70) | st.booleans()


def pointers(document, prefix=""):
    """Every JSON Pointer (RFC 6901) in ``document``, the root ("") included."""
    found = [prefix]
    if isinstance(document, dict):
        for key, value in document.items():
            escaped = key.replace("~", "~0").replace("/", "~1")
            found += pointers(value, f"{prefix}/{escaped}")
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += pointers(value, f"{prefix}/{index}")
    return found


def operations(document):
    """A strategy for one RFC 6902 operation aimed at ``document``'s paths, or a malformed one."""
    existing = st.sampled_from(pointers(document))
    paths = st.one_of(existing, existing, existing, existing.map(lambda p: p + "/-"), st.text(max_size=8))
    well_formed = st.one_of(
        st.fixed_dictionaries({"op": st.sampled_from(["add", "replace"]), "path": paths, "value": json_values}),
        st.fixed_dictionaries({"op": st.just("test"), "path": paths, "value": json_values}),
        st.fixed_dictionaries({"op": st.just("remove"), "path": paths}),
        st.fixed_dictionaries({"op": st.sampled_from(["move", "copy"]), "from": paths, "path": paths}),
    )
    malformed = st.dictionaries(
        st.sampled_from(["op", "path", "from", "value", "extra"]), json_values | st.sampled_from(["add", "remove"])
    )
    return st.one_of(*[well_formed] * 7, malformed)


def model_rebase(model, session, sent_version, ops):
    """The operations a patch made on ``sent_version`` is applied with (rebased on the changes
    since: sessions_app/rebase.py), or None when the server must answer ``conflict``."""
    version, document = model.sessions[session]
    if sent_version > version:
        return None
    if sent_version == version:
        return ops
    try:
        return rebase(ops, model.logs[session][sent_version:], lambda: document)
    except RebaseConflict:
        return None


def model_patch(document, ops):
    """The document after ``ops``, or None when the patch must be refused (the server's rules)."""
    if holds_nul(ops):  # operations are stored as sent (jsonb refuses U+0000 anywhere)
        return None
    try:
        result = jsonpatch.JsonPatch(ops).apply(copy.deepcopy(document))
    except Exception:  # noqa: BLE001 - any failure of the library means "cannot be applied"
        return None
    if not isinstance(result, dict):
        return None
    if holds_nul(result) or len(json.dumps(result, ensure_ascii=False).encode()) > MAX_DOCUMENT_BYTES:
        return None
    return result


def holds_nul(value):
    """True when a string or key anywhere in ``value`` contains U+0000 (PostgreSQL jsonb refuses it)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list):
        return any(holds_nul(item) for item in value)
    if isinstance(value, dict):
        return any(holds_nul(key) or holds_nul(item) for key, item in value.items())
    return False


def model_create(data):
    """Would ``create`` with ``data`` be accepted (title aside)?"""
    return isinstance(data, dict) and model_patch(data, []) is not None


class Model:
    """What the server should hold: ``{session id: [version, document]}`` and the joined session."""

    def __init__(self):
        self.sessions = {}
        self.logs = {}  # session id: the operations of each change as applied, oldest first
        self.joined = None


class Socket:
    """One authenticated communicator; ``exchange`` sends a frame and returns the one answer."""

    def __init__(self, client):
        self.client = client

    async def exchange(self, *, text=None, data=None):
        # send_input, not send_to: the communicator's helper cannot send an empty text frame.
        frame = (
            {"type": "websocket.receive", "bytes": data}
            if data is not None
            else {"type": "websocket.receive", "text": text}
        )
        await self.client.ws.send_input(frame)
        answer = await self.client.recv(timeout=5)
        assert answer.get("code") != "server_error", answer
        assert answer.get("code") != "unavailable", answer
        if answer.get("state") == "error":
            assert isinstance(answer["error"], str), answer
        return answer

    async def usable(self):
        answer = await self.exchange(text=json.dumps({"state": "ping", "id": "alive"}))
        assert answer["state"] == "ping", answer
        assert answer["id"] == "alive"


def check_stored(model):
    """The database holds exactly what the model says, for every session created in the example."""
    for session_id, (version, document) in model.sessions.items():
        session = Session.objects.get(pk=session_id)
        assert session.version == version
        assert session.data == document


def fresh_layers_run(coroutine):
    channel_layers.backends.clear()
    try:
        return asyncio.run(coroutine)
    finally:
        channel_layers.backends.clear()


async def connect(user):
    client = await open_socket()
    await client.send({"token": access_for(user)})
    assert (await client.recv())["state"] == "initialised"
    return client


@pytest.fixture
def fuzzer():
    user, _ = get_user_model().objects.get_or_create(username="fuzzer")
    return user


# --- random frames and envelopes ----------------------------------------------------------------


def envelope(draw, model):
    """A random request: a real or made-up state, random or plausible data, a random id."""
    name = draw(st.sampled_from(STATES) | st.sampled_from(ODD_STATES) | st.text(max_size=10))
    known = list(model.sessions)
    plausible = {
        "create": st.fixed_dictionaries({"title": st.text(max_size=12) | json_values, "data": json_values}),
        "join": st.fixed_dictionaries(
            {"session": st.sampled_from(known or [str(uuid.uuid4())]) | st.uuids().map(str) | json_values},
            optional={"since": st.integers(min_value=-2, max_value=5) | json_values},
        ),
        "patch": st.fixed_dictionaries(
            {
                "version": st.integers(min_value=-1, max_value=4) | json_values,
                "ops": st.lists(operations({}), max_size=3),
            }
        ),
        "invite": st.fixed_dictionaries(
            {"username": st.sampled_from(["fuzzer", "nobody"]) | json_values, "role": json_values}
        ),
        "authenticate": st.fixed_dictionaries({"token": json_values}),
        "save": st.fixed_dictionaries({}, optional={"message": json_values}),
    }
    frame = {"state": name}
    if draw(st.booleans()):
        frame["data"] = draw(plausible.get(name, json_objects) if draw(st.booleans()) else json_values)
    if draw(st.booleans()):
        frame["id"] = draw(request_ids)
    if draw(st.booleans()):
        frame.update(draw(st.dictionaries(st.sampled_from(["extra", "token", "type"]), json_values, max_size=2)))
    return frame


def follow(model, frame, answer):
    """Update the model from a successful answer; returns False when the socket must now close."""
    if answer["state"] == "error":
        return answer["code"] not in FATAL
    data = frame.get("data") or {}
    state = frame["state"]
    if state == "create":
        model.sessions[answer["data"]["id"]] = [0, data.get("data", {})]
        model.logs[answer["data"]["id"]] = []
        model.joined = answer["data"]["id"]
        assert answer["data"]["version"] == 0
        assert answer["data"]["data"] == data.get("data", {})
    elif state == "join":
        model.joined = answer["data"]["id"]
    elif state == "leave":
        model.joined = None
    elif state == "patch":
        version, document = model.sessions[model.joined]
        applied = model_rebase(model, model.joined, data["version"], data["ops"])
        assert applied is not None, (version, data, answer)
        after = model_patch(document, applied)
        assert after is not None, (document, applied)
        model.sessions[model.joined] = [version + 1, after]
        model.logs[model.joined].append(applied)
        rebased = {"rebased": True, "ops": applied} if data["version"] != version else {}
        assert answer["data"] == {"version": version + 1, **rebased}
    elif state == "save":
        return False  # replied, then closed with 1000
    return True


@FUZZ
@given(data=st.data())
def test_random_frames_never_get_server_error_and_leave_the_socket_usable(fuzzer, data):
    model = Model()

    async def scenario():
        client = await connect(fuzzer)
        socket = Socket(client)
        try:
            for _ in range(data.draw(st.integers(min_value=1, max_value=8), label="frames")):
                kind = data.draw(st.sampled_from(["bytes", "text", "json", "envelope", "envelope", "envelope"]))
                if kind == "bytes":
                    answer = await socket.exchange(data=data.draw(st.binary(min_size=1, max_size=64)))
                    assert answer["code"] == "unsupported_frame", answer
                    frame = None
                else:
                    if kind == "text":
                        text = data.draw(st.text(max_size=64))
                    elif kind == "json":
                        text = json.dumps(data.draw(json_values))
                    else:
                        text = json.dumps(envelope(data.draw, model))
                    answer = await socket.exchange(text=text)
                    try:
                        frame = json.loads(text)
                    except ValueError:
                        frame = None
                if answer["state"] == "error" and answer["code"] in FATAL:
                    assert await client.closed() == FATAL[answer["code"]]
                    return
                if isinstance(frame, dict) and answer["state"] != "error" and "state" in frame:
                    if not follow(model, frame, answer):
                        assert await client.closed() == 1000
                        return
                elif answer["state"] != "error":
                    # Only a JSON object with a valid state gets a reply; follow it like an envelope.
                    assert isinstance(frame, dict), answer
                await socket.usable()
        finally:
            await client.ws.disconnect()

    with NO_RATE_LIMIT:
        fresh_layers_run(scenario())
    check_stored(model)


# --- random patches against random documents ---------------------------------------------------------


@FUZZ
@given(initial=json_objects, data=st.data())
@example(initial={"text": "\\u0000 is how JSON escapes NUL"}, data=None).via("a literal backslash-u0000 is not U+0000")
def test_random_patches_version_and_document_follow_the_model(fuzzer, initial, data):
    model = Model()

    async def scenario():
        client = await connect(fuzzer)
        socket = Socket(client)
        try:
            answer = await socket.exchange(
                text=json.dumps({"state": "create", "data": {"title": "fuzz", "data": initial}})
            )
            if not model_create(initial):
                assert answer["state"] == "error", answer
                assert answer["code"] == "invalid_data", answer
                return
            assert answer["state"] == "create", answer
            session = answer["data"]["id"]
            model.sessions[session] = [0, copy.deepcopy(initial)]
            model.logs[session] = []
            steps = data.draw(st.integers(min_value=1, max_value=6), label="patches") if data else 0
            for _ in range(steps):
                version, document = model.sessions[session]
                ops = data.draw(st.lists(operations(document), min_size=1, max_size=2), label="ops")
                sent_version = data.draw(st.sampled_from([version, version, version, version + 1, max(0, version - 1)]))
                answer = await socket.exchange(
                    text=json.dumps({"state": "patch", "data": {"version": sent_version, "ops": ops}})
                )
                applied = model_rebase(model, session, sent_version, ops)
                after = None if applied is None else model_patch(document, applied)
                if applied is None:  # ahead, or stale and colliding with the change since
                    assert answer["code"] == "conflict", answer
                    assert answer["data"] == {"version": version}
                elif after is None:  # does not apply: a rebased patch conflicts, a current one is wrong
                    assert answer["state"] == "error", (document, ops, answer)
                    assert answer["code"] == ("conflict" if sent_version != version else "invalid_data"), answer
                else:
                    rebased = {"rebased": True, "ops": applied} if sent_version != version else {}
                    assert answer == {"state": "patch", "data": {"version": version + 1, **rebased}}, (document, ops)
                    model.sessions[session] = [version + 1, after]
                    model.logs[session].append(applied)
                event(f"patch answered {answer.get('code', 'ok')}")
                await socket.usable()
            version, document = model.sessions[session]
            snapshot = await socket.exchange(text=json.dumps({"state": "join", "data": {"session": session}}))
            assert snapshot["data"]["version"] == version
            assert snapshot["data"]["data"] == document
        finally:
            await client.ws.disconnect()

    with NO_RATE_LIMIT:
        fresh_layers_run(scenario())
    check_stored(model)
