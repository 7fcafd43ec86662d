"""The rules of a session's document: a JSON object, bounded in size and depth, changed by
RFC 6902 JSON Patch (the jsonpatch library) without ever growing past its bound on the way.
"""

import json
from typing import Any

import jsonpatch
import jsonpointer
import orjson

from . import protocol
from .conf import app_settings
from .protocol import ProtocolError
from .work import Work, limit_for, tokens

# Errors the jsonpatch and jsonpointer libraries raise for an operation that cannot be applied,
# mapped to the reason the client is told (the libraries' own texts name Python internals).
_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (jsonpatch.JsonPatchTestFailed, "its test failed"),
    (jsonpatch.InvalidJsonPatch, "it is not a valid RFC 6902 operation"),
    (jsonpatch.JsonPatchConflict, "its path does not exist or does not fit the document"),
    (jsonpointer.JsonPointerException, "its path does not exist or does not fit the document"),
    (jsonpatch.JsonPatchException, "it cannot be applied"),
    (KeyError, "its path does not exist"),
    (IndexError, "its path does not exist"),
    (TypeError, "it does not fit the document"),
    (ValueError, "it does not fit the document"),
    (AttributeError, "it does not fit the document"),
    (RecursionError, "it nests too deeply"),
)
_PATCH_ERRORS = tuple(kind for kind, _ in _REASONS)


def check_document(data: Any, *, depth_checked: bool = False) -> str:
    """Raise ProtocolError(INVALID_DATA) unless ``data`` is a storable session document; returns
    its compact JSON text.

    A JSON object, nested at most ``protocol.MAX_DEPTH`` levels (not walked again when
    ``depth_checked``), at most ``SESSIONS_MAX_DOCUMENT_BYTES`` bytes of compact JSON, with no
    U+0000 in any key or string (PostgreSQL's jsonb cannot store it).
    """
    if not isinstance(data, dict):
        raise ProtocolError(protocol.INVALID_DATA, "A session's data must be a JSON object.")
    if not depth_checked and protocol.depth(data) > protocol.MAX_DEPTH:
        raise ProtocolError(
            protocol.INVALID_DATA, f"The document must not nest deeper than {protocol.MAX_DEPTH} levels."
        )
    text = protocol.encode(data)
    limit = app_settings.MAX_DOCUMENT_BYTES
    if len(text) > limit // 4 and len(text.encode()) > limit:
        raise ProtocolError(protocol.INVALID_DATA, f"The document would exceed {limit} bytes.", data={"limit": limit})
    if "\\u0000" in text and _holds_nul(data):  # the text test is a cheap pre-filter
        raise ProtocolError(protocol.INVALID_DATA, "The document must not contain the character U+0000.")
    return text


def _holds_nul(value: Any) -> bool:
    """True when a key or string anywhere in ``value`` contains U+0000 (depth already bounded)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in key or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


def load(text: str) -> dict[str, Any]:
    """A stored document from its JSON text as the database returns it; integers of any size exact.

    orjson reads integers beyond 64 bits as floats, so a text with a run of 19 or more digits goes
    through the standard library instead (as ``protocol.decode`` does). The document was checked
    when it was stored: its depth is not walked again.
    """
    return json.loads(text) if protocol.LONG_DIGITS.search(text) else orjson.loads(text)


def apply_patch_text(text: str, ops: list[dict[str, Any]], *, work: Work | None = None) -> str:
    """The stored document ``text`` (JSON) with ``ops`` applied, as compact JSON text to store.

    The document work of a patch, done where the caller runs it (a patch worker for a large
    document): decoding, apply_patch, and the checks and encoding of check_document. Raises what
    apply_patch raises.
    """
    return _apply(load(text), ops, work)[1]


def apply_patch(document: dict[str, Any], ops: list[dict[str, Any]], *, work: Work | None = None) -> dict[str, Any]:
    """Apply RFC 6902 ``ops`` to ``document`` in place, one operation at a time; returns the result.

    ``document`` must be the caller's own copy (fresh from the database). ``copy`` is the one
    operation that can grow a document beyond what the frame carries (20 copies of the root double
    it 20 times), so each ``copy`` adds the size of its source to a running bound, and the patch is
    refused as soon as the bound passes ``SESSIONS_MAX_DOCUMENT_BYTES``, before the copy is made.
    ``work`` (default: the budget of ``ops``' size, ``work.limit_for``) counts the nodes the
    operations visit (sessions_app/work.py); past its limit the patch is refused with
    ProtocolError(PATCH_TOO_COSTLY) (``work.OverBudget``), before the operation that would pass it
    is applied. Raises ProtocolError(INVALID_DATA) naming the first operation that cannot be
    applied or holds U+0000 in any of its members (operations are stored in the change log as
    sent, extra members included, and PostgreSQL's jsonb cannot store U+0000), or for a result
    that check_document refuses.
    """
    return _apply(document, ops, work)[0]


def _apply(document: dict[str, Any], ops: list[dict[str, Any]], work: Work | None) -> tuple[dict[str, Any], str]:
    """apply_patch, returning the result and its compact JSON text (from check_document)."""
    _check_no_nul(ops)
    if work is None:
        work = Work(limit_for(protocol.json_size(ops)))
    limit = app_settings.MAX_DOCUMENT_BYTES
    bound = -1  # the size bound, measured at the first copy
    for index, op in enumerate(ops):
        try:
            name, path, source = op.get("op"), op.get("path"), op.get("from")
            work.spend(1 + tokens(path) + tokens(source))
            if name == "move" and isinstance(source, str) and isinstance(path, str) and path.startswith(source + "/"):
                # RFC 6902 section 4.4: "from" must not be a proper prefix of "path" (jsonpatch's
                # own refusal would read as a path that does not exist).
                where = f"{source!r}" if source else "the whole document"
                raise ProtocolError(
                    protocol.INVALID_DATA,
                    f"Operation {index} (move {path[:80]}) cannot be applied: it moves {where[:80]} into one of "
                    "its own children (RFC 6902, section 4.4).",
                )
            if name in ("copy", "move") and isinstance(source, str):
                value = jsonpointer.resolve_pointer(document, source)
                # The document was within MAX_DEPTH: a value moved no deeper than it was still fits
                # (and one moved into itself is refused by jsonpatch).
                deeper = tokens(path) > tokens(source) and not path.startswith(source + "/")
                if name == "copy" or deeper:
                    _check_depth(path, work.measure(value))
                if name == "copy":
                    if bound < 0:
                        bound = protocol.json_size(document)
                    bound += protocol.json_size(value)
                    if bound > limit:
                        raise ProtocolError(
                            protocol.INVALID_DATA, f"The document would exceed {limit} bytes.", data={"limit": limit}
                        )
                else:
                    work.shift(document, source)
                work.shift(document, path)
            elif name == "remove":
                work.shift(document, path)
            elif name in ("add", "replace", "test"):
                _check_depth(path, work.measure(op.get("value")))
                if name == "add":
                    work.shift(document, path)
            document = jsonpatch.JsonPatch([op]).apply(document, in_place=True)
        except _PATCH_ERRORS as exc:
            reason = next(text for kind, text in _REASONS if isinstance(exc, kind))
            path = op.get("path")
            label = f"{name} {path}" if isinstance(name, str) and isinstance(path, str) else "malformed"
            raise ProtocolError(
                protocol.INVALID_DATA, f"Operation {index} ({label[:80]}) cannot be applied: {reason}."
            ) from None
    # The document was within MAX_DEPTH before, and _check_depth bounded every value placed in it.
    return document, check_document(document, depth_checked=True)


def _check_no_nul(ops: list[dict[str, Any]]) -> None:
    """Refuse operations with U+0000 in any key or string, naming the first (the text test is a
    cheap pre-filter: U+0000 can only be in the encoded text as the escape backslash-u-0000)."""
    if "\\u0000" not in protocol.encode(ops):
        return
    for index, op in enumerate(ops):
        if _holds_nul(op):
            name, path = op.get("op"), op.get("path")
            label = f"{name} {path}" if isinstance(name, str) and isinstance(path, str) else "malformed"
            label = label.replace("\x00", "\\u0000")
            raise ProtocolError(
                protocol.INVALID_DATA,
                f"Operation {index} ({label[:80]}) cannot be applied: it contains the character U+0000.",
            )


def _check_depth(path: Any, depth: int) -> None:
    """Refuse placing a value ``depth`` levels deep at JSON Pointer ``path`` when the document
    would nest too deeply.

    A value at a pointer of n tokens sits n containers below the root's level, so the document's
    new depth is at most max(its old depth, n + depth(value)): checking the operations bounds the
    result without walking the whole document.
    """
    if tokens(path) + depth > protocol.MAX_DEPTH:
        message = f"The document must not nest deeper than {protocol.MAX_DEPTH} levels."
        raise ProtocolError(protocol.INVALID_DATA, message)
