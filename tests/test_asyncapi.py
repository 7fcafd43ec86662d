"""The socket's AsyncAPI 3.0 document (sessions_app/asyncapi.py): valid against the official JSON
Schema, generated from the registry (a state registered now is in it), served and written by
``manage.py asyncapi``, and in step with static/sessions/client.d.ts; the reply-schema check."""

import copy
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import jsonpointer
import pytest
from django.core import checks
from django.core.management import call_command
from rest_framework import serializers

from sessions_app import asyncapi, protocol
from sessions_app.registry import PUSHES, REGISTRY, push_state, state
from tests.contract import asyncapi_errors

ROOT = Path(__file__).resolve().parent.parent


class GreetSchema(serializers.Serializer):
    greeting = serializers.CharField(max_length=50)


class GreetReply(serializers.Serializer):
    text = serializers.CharField()


async def greet(conn, data):
    """Greets: ``{"greeting"}`` -> ``{"text"}``."""
    return {"text": data["greeting"]}


@pytest.fixture
def pushes():
    """The push declarations; those a test declares are removed afterwards."""
    before = dict(PUSHES)
    yield PUSHES
    PUSHES.clear()
    PUSHES.update(before)


def refs(value):
    if isinstance(value, dict):
        if isinstance(value.get("$ref"), str):
            yield value["$ref"]
        for item in value.values():
            yield from refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from refs(item)


# --- validity ----------------------------------------------------------------------------------------


def test_the_document_validates_against_the_asyncapi_3_json_schema():
    document = asyncapi.document()
    assert document["asyncapi"] == "3.0.0"
    assert asyncapi_errors(document) == []


@pytest.mark.parametrize(
    "breaks",
    [
        lambda d: d["operations"]["request.ping"].update(action="publish"),
        lambda d: d["info"].pop("version"),
        lambda d: d["channels"]["socket"]["messages"]["reply.patch"]["payload"].update(type=5),
        lambda d: d["channels"]["socket"].update(unknown=1),
    ],
)
def test_the_validation_finds_a_broken_document(breaks):
    document = asyncapi.document()
    breaks(document)
    assert asyncapi_errors(document) != []


def test_every_reference_in_the_document_resolves_in_it():
    document = asyncapi.document()
    found = set(refs(document))
    assert "#/components/schemas/Snapshot" in found
    for ref in found:
        assert ref.startswith("#/"), ref
        jsonpointer.resolve_pointer(document, ref[1:])


# --- generated from the registry -----------------------------------------------------------------------


def test_every_registered_state_and_declared_push_is_in_the_document():
    document = asyncapi.document()
    operations, messages = document["operations"], document["channels"]["socket"]["messages"]
    for name, entry in REGISTRY.items():
        operation = operations[f"request.{name}"]
        assert operation["action"] == "send"
        assert operation["x-needs-session"] is entry.needs_session
        assert messages[f"request.{name}"]["payload"]["properties"]["state"] == {"const": name}
        assert messages[f"reply.{name}"]["payload"]["properties"]["state"] == {"const": name}
    for name in PUSHES:
        assert operations[f"push.{name}"]["action"] == "receive"
    assert {"handshake", "initialised", "error"} <= set(messages)


def test_a_state_registered_now_is_in_the_document_with_its_request_and_reply_schemas(registry):
    state("test-greet", schema=GreetSchema, reply=GreetReply, needs_session=True)(greet)
    document = asyncapi.document()
    operation = document["operations"]["request.test-greet"]
    assert operation["x-needs-session"] is True and operation["x-reply-declared"] is True
    assert "Greets" in operation["description"]
    messages = document["channels"]["socket"]["messages"]
    request = messages["request.test-greet"]["payload"]["properties"]["data"]
    assert request["properties"]["greeting"] == {"type": "string", "maxLength": 50}
    assert request["required"] == ["greeting"]
    reply = messages["reply.test-greet"]["payload"]["properties"]["data"]
    assert reply["properties"] == {"text": {"type": "string"}}
    assert asyncapi_errors(document) == []


def test_a_state_registered_without_a_reply_schema_still_works_and_is_documented_as_any_object(registry):
    state("test-plain")(greet)
    assert registry["test-plain"].reply is None
    document = asyncapi.document()
    assert document["operations"]["request.test-plain"]["x-reply-declared"] is False
    data = document["channels"]["socket"]["messages"]["reply.test-plain"]["payload"]["properties"]["data"]
    assert data == {"type": "object", "description": "Not declared."}
    assert asyncapi_errors(document) == []


def test_a_reply_may_be_a_json_schema_or_one_of_several(registry):
    state("test-json", reply={"type": "object", "properties": {"n": {"type": "integer"}}})(greet)
    state("test-either", reply=(GreetReply, {"type": "object", "maxProperties": 0}))(greet)
    document = asyncapi.document()
    messages = document["channels"]["socket"]["messages"]
    assert messages["reply.test-json"]["payload"]["properties"]["data"]["properties"] == {"n": {"type": "integer"}}
    either = messages["reply.test-either"]["payload"]["properties"]["data"]["oneOf"]
    assert either == [{"$ref": "#/components/schemas/GreetReply"}, {"type": "object", "maxProperties": 0}]
    assert document["components"]["schemas"]["GreetReply"]["properties"] == {"text": {"type": "string"}}
    assert asyncapi_errors(document) == []


def test_a_reply_schema_of_another_kind_is_refused_when_generating(registry):
    state("test-bad", reply=["not", "a", "schema"])(greet)
    with pytest.raises(TypeError, match="not a serializer"):
        asyncapi.document()


def test_a_declared_push_is_in_the_document(pushes):
    push_state("test-cursor", payload=GreetReply, audience="the session", description="A cursor moved.")
    document = asyncapi.document()
    assert document["operations"]["push.test-cursor"]["description"] == "A cursor moved. To: the session."
    data = document["channels"]["socket"]["messages"]["push.test-cursor"]["payload"]["properties"]["data"]
    assert data["properties"] == {"text": {"type": "string"}}
    with pytest.raises(ValueError, match="already declared"):
        push_state("test-cursor", payload=GreetReply)
    with pytest.raises(ValueError, match="reserved"):
        push_state("error", payload=GreetReply)


def test_the_error_frame_has_every_code_and_the_close_code_each_closes_with():
    document = asyncapi.document()
    payload = document["channels"]["socket"]["messages"]["error"]["payload"]
    assert payload["properties"]["code"]["enum"] == list(protocol.ERROR_CODES)
    codes = {row["code"]: row["closes"] for row in document["channels"]["socket"]["x-error-codes"]}
    assert codes["not_authenticated"] == 4401 and codes["message_too_large"] == 4413 and codes["conflict"] is None
    declared = {value for key, value in vars(protocol).items() if key.isupper() and isinstance(value, str)}
    assert set(protocol.ERROR_CODES) <= declared
    table = (ROOT / "docs" / "protocol.md").read_text()
    for code in protocol.ERROR_CODES:
        assert f"| `{code}` |" in table


def test_the_close_codes_are_the_protocols():
    document = asyncapi.document()
    close = [row["code"] for row in document["channels"]["socket"]["x-close-codes"]]
    assert close == [1000, 1012, 4008, 4401, 4408, 4413, 4429, 4503]
    assert set(protocol.CLOSE_FOR.values()) <= set(close)


# --- served, written, checked ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_document_is_served_with_the_requests_host(client):
    response = client.get("/api/v1/socket/asyncapi.json")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    served = response.json()
    assert served == json.loads(json.dumps(asyncapi.document(host="testserver")))
    assert served["servers"]["server"] == {"host": "testserver", "protocol": "ws"}


@pytest.mark.django_db
def test_the_served_document_is_made_once_and_anew_when_the_registry_changes(client, registry):
    first = client.get("/api/v1/socket/asyncapi.json").json()
    assert asyncapi.cached_document(host="testserver", secure=False) is asyncapi.cached_document(
        host="testserver", secure=False
    )
    state("test-late", schema=GreetSchema, reply=GreetReply)(greet)
    second = client.get("/api/v1/socket/asyncapi.json").json()
    assert "request.test-late" not in first["operations"] and "request.test-late" in second["operations"]
    assert "test-late" in client.get("/api/v1/docs/").content.decode()


def test_manage_py_asyncapi_writes_the_document(tmp_path):
    out = io.StringIO()
    call_command("asyncapi", "--host", "example.org", "--secure", stdout=out)
    written = json.loads(out.getvalue())
    assert written["servers"]["server"] == {"host": "example.org", "protocol": "wss"}
    assert asyncapi_errors(written) == []
    call_command("asyncapi", "--file", str(tmp_path / "asyncapi.json"))
    assert json.loads((tmp_path / "asyncapi.json").read_text()) == json.loads(json.dumps(asyncapi.document()))


def test_the_check_warns_about_each_state_without_a_reply_schema(registry):
    assert [m for m in checks.run_checks() if m.id == "sessions.W001"] == []
    state("test-undeclared")(greet)
    warnings = [m for m in checks.run_checks() if m.id == "sessions.W001"]
    assert [w.msg for w in warnings] == ["The state 'test-undeclared' declares no reply schema."]
    assert warnings[0].level == checks.WARNING


def test_manage_py_check_shows_the_warning(registry):
    state("test-undeclared")(greet)
    err = io.StringIO()
    call_command("check", stderr=err, stdout=io.StringIO())
    assert "sessions.W001" in err.getvalue() and "test-undeclared" in err.getvalue()


# --- client.d.ts ------------------------------------------------------------------------------------------


def interface_keys(declarations: str, name: str) -> set[str]:
    body = re.search(rf"^export interface {name}\b[^{{]*{{\n(.*?)^}}", declarations, re.M | re.S)
    assert body, f"no interface {name} in client.d.ts"
    return set(re.findall(r"^  ([A-Za-z0-9_]+): ", body.group(1), re.M))


def test_client_d_ts_declares_every_built_in_state_and_push_of_the_document_and_no_other():
    declarations = (ROOT / "static" / "sessions" / "client.d.ts").read_text()
    document = asyncapi.document()
    built_in = {
        key.removeprefix("request.")
        for key in document["operations"]
        if key.startswith("request.")
        and REGISTRY[key.removeprefix("request.")].handler.__module__.startswith("sessions_app.")
    }
    # The project's own pushes: declared with a payload serializer of sessions_app (an app's may be
    # anywhere, or a JSON Schema dict).
    pushes = {
        key.removeprefix("push.")
        for key in document["operations"]
        if key.startswith("push.")
        and getattr(PUSHES[key.removeprefix("push.")].payload, "__module__", "").startswith("sessions_app.")
    }
    assert len(built_in) >= 17 and len(pushes) >= 9
    assert interface_keys(declarations, "Requests") == built_in
    assert interface_keys(declarations, "Pushes") == pushes
    union = re.search(r"export type ServerErrorCode =(.*?);", declarations, re.S).group(1)
    assert re.findall(r'"([a-z_]+)"', union) == list(protocol.ERROR_CODES)
    close = re.search(r"export type CloseCode =(.*?);", declarations, re.S).group(1)
    close_codes = {int(code) for code in re.findall(r"\d+", close)}
    assert {row["code"] for row in document["channels"]["socket"]["x-close-codes"]} <= close_codes


def test_every_built_in_push_is_in_the_protocol_documents_tables():
    table = (ROOT / "docs" / "protocol.md").read_text()
    built_in = [n for n, p in PUSHES.items() if getattr(p.payload, "__module__", "").startswith("sessions_app.")]
    assert len(built_in) >= 9
    for name in built_in:
        assert f"| `{name}` |" in table, f"push {name} is not in docs/protocol.md's tables of pushes"


def test_the_d_ts_check_finds_a_missing_state():
    declarations = (ROOT / "static" / "sessions" / "client.d.ts").read_text()
    without = re.sub(r"^  restore: .*$", "", declarations, flags=re.M)
    assert "restore" in interface_keys(declarations, "Requests")
    assert "restore" not in interface_keys(without, "Requests")
    assert copy.deepcopy(interface_keys(declarations, "Pushes")) >= {"patched", "members"}


# --- an app's states ---------------------------------------------------------------------------------------

APP_DOCUMENT = """
import json, os
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django.setup()
import tests.apps.channels_way
from django.core import checks
from sessions_app import asyncapi
warnings = [m.msg for m in checks.run_checks() if m.id == "sessions.W001"]
print(json.dumps({"document": asyncapi.document(), "warnings": warnings}))
"""


@pytest.mark.slow
def test_the_states_and_pushes_an_app_module_registers_are_in_its_document():
    # In another interpreter: importing tests.apps.channels_way registers its states for good.
    out = subprocess.run(  # noqa: S603
        [sys.executable, "-c", APP_DOCUMENT], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    document = result["document"]
    assert asyncapi_errors(document) == []
    operations, messages = document["operations"], document["channels"]["socket"]["messages"]
    assert {"request.lobby_join", "request.lobby_say", "request.direct", "push.lobby", "push.direct"} <= set(operations)
    room = messages["request.lobby_join"]["payload"]["properties"]["data"]["properties"]["room"]
    assert room["pattern"] == "^[a-z0-9]{1,20}$"
    joined = messages["reply.lobby_join"]["payload"]["properties"]["data"]
    assert set(joined["properties"]) == {"room", "channel"}
    assert set(messages["push.lobby"]["payload"]["properties"]["data"]["properties"]) == {"room", "text", "from"}
    assert operations["request.lobby_say"]["x-reply-declared"] is False
    assert result["warnings"] == ["The state 'lobby_say' declares no reply schema."]
