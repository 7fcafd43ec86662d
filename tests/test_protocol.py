"""Unit tests for sessions_app.protocol: JSON decoding and encoding, and the request envelope."""

import datetime
import decimal
import json
import uuid

import pytest

from sessions_app import protocol
from sessions_app.protocol import ProtocolError

LONG = 12345678901234567890  # 20 digits: beyond 64 bits, so decode takes the exact (stdlib) parser

# --- decode ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["NaN", "Infinity", "-Infinity", '{"x": NaN}', '{"x": [Infinity]}', '{"x": -Infinity}']
)
def test_decoding_nan_or_infinity_raises_value_error(text):
    with pytest.raises(ValueError):
        protocol.decode(text)


@pytest.mark.parametrize("text", [f'{{"x": NaN, "n": {LONG}}}', f"[Infinity, {LONG}]", f"[-Infinity, {LONG}]"])
def test_decoding_nan_or_infinity_next_to_a_long_integer_raises_value_error(text):
    with pytest.raises(ValueError):
        protocol.decode(text)


@pytest.mark.parametrize(
    "text", ["1e400", "-1e400", '{"x": 1e400}', f'{{"x": 1e400, "n": {LONG}}}', f"[-1e999, {LONG}]"]
)
def test_decoding_a_number_that_overflows_a_double_raises_value_error(text):
    with pytest.raises(ValueError):
        protocol.decode(text)


@pytest.mark.parametrize("text", ["", "{", '{"state": "ping",}', "{'state': 'ping'}", "undefined", '"abc'])
def test_decoding_text_that_is_not_json_raises_value_error(text):
    with pytest.raises(ValueError):
        protocol.decode(text)


@pytest.mark.parametrize(
    "text",
    [
        '"\\ud800"',
        '{"s": "\\udfff"}',
        f'{{"s": "\\ud800", "n": {LONG}}}',
        f'{{"s": "\\udc00x", "n": {LONG}}}',
        f'["\\ud83d", {LONG}]',
    ],
    ids=["high", "low", "high-next-to-long-int", "low-next-to-long-int", "half-emoji-next-to-long-int"],
)
def test_decoding_a_lone_surrogate_escape_raises_value_error(text):
    # A lone surrogate is not a Unicode scalar value: it cannot be stored or re-sent as UTF-8.
    with pytest.raises(ValueError):
        protocol.decode(text)


def test_decoding_a_surrogate_pair_escape_gives_the_character():
    assert protocol.decode('"\\ud83d\\ude00"') == "\U0001f600"
    assert protocol.decode(f'["\\ud83d\\ude00", {LONG}]') == ["\U0001f600", LONG]


def test_decoding_keeps_falsy_values_as_they_are():
    text = '{"zero": 0, "empty": "", "false": false, "list": [], "object": {}, "null": null, "float": 0.0}'
    decoded = protocol.decode(text)
    assert decoded == {"zero": 0, "empty": "", "false": False, "list": [], "object": {}, "null": None, "float": 0.0}
    assert decoded["false"] is False
    assert type(decoded["zero"]) is int
    assert type(decoded["float"]) is float


@pytest.mark.parametrize("value", [2**63 - 1, 2**63, 2**64 + 1, -(2**63) - 1, 10**30 + 7, -(10**40) - 3])
def test_decoding_keeps_big_integers_exact(value):
    decoded = protocol.decode(f'{{"n": {value}, "list": [{value}]}}')
    assert decoded == {"n": value, "list": [value]}
    assert type(decoded["n"]) is int


def test_decoding_a_long_run_of_digits_inside_a_string_keeps_the_string():
    assert protocol.decode('{"s": "12345678901234567890", "f": 1.5}') == {"s": "12345678901234567890", "f": 1.5}


def test_decoding_keeps_unicode_text_unchanged():
    text = json.dumps({"s": "é€\U0001f600 \u2028"}, ensure_ascii=False)
    assert protocol.decode(text) == {"s": "é€\U0001f600 \u2028"}


# --- encode ---------------------------------------------------------------------------------------


def test_encoding_a_uuid_gives_its_canonical_string():
    value = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert json.loads(protocol.encode({"id": value})) == {"id": "12345678-1234-5678-1234-567812345678"}


def test_encoding_an_aware_datetime_gives_iso_8601_of_the_same_instant():
    moment = datetime.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=datetime.UTC)
    text = json.loads(protocol.encode({"at": moment}))["at"]
    assert isinstance(text, str)
    assert datetime.datetime.fromisoformat(text) == moment
    assert datetime.datetime.fromisoformat(text).utcoffset() == datetime.timedelta(0)


def test_encoding_a_decimal_gives_a_string_with_every_digit():
    encoded = json.loads(
        protocol.encode({"a": decimal.Decimal("1.10"), "b": decimal.Decimal("-0.000000000000000000001")})
    )
    assert encoded == {"a": "1.10", "b": "-1E-21"}


def test_encoding_a_decimal_with_more_digits_than_a_double_keeps_them():
    assert json.loads(protocol.encode([decimal.Decimal("3.14159265358979323846264338327950288")])) == [
        "3.14159265358979323846264338327950288"
    ]


def test_encoding_keeps_falsy_values_as_they_are():
    value = {"zero": 0, "empty": "", "false": False, "list": [], "object": {}, "null": None, "float": 0.0}
    assert json.loads(protocol.encode(value)) == value
    assert protocol.decode(protocol.encode(value)) == value


@pytest.mark.parametrize("value", [2**63, 2**64 + 1, -(2**63) - 1, 10**40 + 1])
def test_encoding_keeps_big_integers_exact(value):
    text = protocol.encode({"n": value, "nested": [{"m": value}], "u": uuid.UUID(int=1)})
    assert json.loads(text) == {"n": value, "nested": [{"m": value}], "u": "00000000-0000-0000-0000-000000000001"}


def _refuse_constant(name):
    raise ValueError(f"{name} is not JSON")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_encoding_nan_or_infinity_never_writes_text_that_is_not_json(value):
    # protocol.encode documents its choice: orjson writes non-finite floats as null (decode refuses
    # them from clients, so only server code could produce one). What must never leave the server
    # is the non-JSON NaN / Infinity literal that json.dumps writes by default.
    try:
        text = protocol.encode({"x": value})
    except ValueError:
        return
    assert json.loads(text, parse_constant=_refuse_constant) == {"x": None}


def test_encoding_an_unknown_type_raises_type_error():
    with pytest.raises(TypeError):
        protocol.encode({"x": object()})


def test_encoding_is_compact_and_keeps_non_ascii_text():
    assert protocol.encode({"a": [1, 2], "s": "é"}) == '{"a":[1,2],"s":"é"}'


def test_encoding_then_decoding_gives_back_the_same_value():
    value = {"s": "x", "n": -(2**70), "f": 0.1, "nested": {"l": [True, None, "", 0]}}
    assert protocol.decode(protocol.encode(value)) == value


def test_utc_iso_gives_utc_with_a_z_suffix():
    moment = datetime.datetime(2026, 1, 2, 5, 4, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    assert protocol.utc_iso(moment) == "2026-01-02T03:04:05Z"


# --- envelope -------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["", "r-17", "x" * 64, "é" * 64, 0, -1, 2**63 - 1, -(2**63)])
def test_a_string_of_up_to_64_characters_or_a_64_bit_integer_is_a_valid_id(value):
    assert protocol.valid_id(value) is True


@pytest.mark.parametrize("value", [None, True, False, 1.0, 1.5, "x" * 65, 2**63, -(2**63) - 1, [], {}, ["r1"]])
def test_anything_else_is_not_a_valid_id(value):
    assert protocol.valid_id(value) is False


def test_parse_envelope_returns_state_data_and_id():
    assert protocol.parse_envelope({"state": "patch", "data": {"version": 3}, "id": "r-17"}) == (
        "patch",
        {"version": 3},
        "r-17",
    )


def test_parse_envelope_defaults_data_to_an_empty_object_and_id_to_none():
    assert protocol.parse_envelope({"state": "ping"}) == ("ping", {}, None)


def test_parse_envelope_passes_data_through_unchanged():
    data = {"zero": 0, "empty": "", "false": False, "list": [], "null": None, "big": 2**70}
    name, parsed, request_id = protocol.parse_envelope({"state": "x", "data": data, "id": 0})
    assert name == "x"
    assert parsed == data
    assert parsed["false"] is False
    assert request_id == 0


@pytest.mark.parametrize("state", ["a", "A-z_0.9", "x" * 64, "session.push", "__init__"])
def test_parse_envelope_accepts_every_well_formed_state_name(state):
    assert protocol.parse_envelope({"state": state})[0] == state


@pytest.mark.parametrize(
    "message",
    [
        None,
        [],
        ["ping"],
        "ping",
        1,
        {},
        {"data": {}},
        {"state": None},
        {"state": 5},
        {"state": ""},
        {"state": "x" * 65},
        {"state": "a b"},
        {"state": "a/b"},
        {"state": "ping\n"},
        {"state": "pïng"},
        {"state": ["ping"]},
        {"state": "ping", "data": None},
        {"state": "ping", "data": []},
        {"state": "ping", "data": "x"},
        {"state": "ping", "data": 0},
        {"state": "ping", "id": None},
        {"state": "ping", "id": True},
        {"state": "ping", "id": 1.5},
        {"state": "ping", "id": "x" * 65},
        {"state": "ping", "id": 2**63},
        {"state": "ping", "id": {"x": 1}},
    ],
)
def test_parse_envelope_refuses_a_malformed_request_as_invalid_message(message):
    with pytest.raises(ProtocolError) as caught:
        protocol.parse_envelope(message)
    assert caught.value.code == protocol.INVALID_MESSAGE
    assert caught.value.close_code is None
    assert isinstance(caught.value.message, str)
    assert caught.value.message


def test_reply_echoes_falsy_ids():
    assert protocol.reply("ping", {}, 0) == {"state": "ping", "data": {}, "id": 0}
    assert protocol.reply("ping", {}, "") == {"state": "ping", "data": {}, "id": ""}
    assert protocol.reply("ping", {}) == {"state": "ping", "data": {}}


def test_error_frame_has_code_text_and_only_the_optional_fields_given():
    assert protocol.error("conflict", "Old version.", request_id=0, request_state="patch", data={"version": 4}) == {
        "state": "error",
        "code": "conflict",
        "error": "Old version.",
        "id": 0,
        "request_state": "patch",
        "data": {"version": 4},
    }
    assert protocol.error("invalid_json", "Bad.") == {"state": "error", "code": "invalid_json", "error": "Bad."}


@pytest.mark.parametrize(
    ("code", "close"),
    [
        (protocol.NOT_AUTHENTICATED, 4401),
        (protocol.TOKEN_EXPIRED, 4401),
        (protocol.AUTH_TIMEOUT, 4408),
        (protocol.MESSAGE_TOO_LARGE, 4413),
        (protocol.TOO_MANY_CONNECTIONS, 4429),
        (protocol.UNAVAILABLE, 4503),
        (protocol.INVALID_JSON, None),
        (protocol.INVALID_MESSAGE, None),
        (protocol.UNSUPPORTED_FRAME, None),
        (protocol.UNKNOWN_STATE, None),
        (protocol.INVALID_DATA, None),
        (protocol.RATE_LIMITED, None),
        (protocol.SERVER_ERROR, None),
    ],
)
def test_each_error_code_carries_the_close_code_of_protocol_section_6(code, close):
    assert ProtocolError(code, "text").close_code == close
