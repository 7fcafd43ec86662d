"""A session's history: its revisions and the kept change log (reads), one revision's document,
and what the ``restore`` state computes (docs/protocol.md, section 7, "History").

Synchronous code. The reads (``history_page``, ``revision_get``, ``restore_base``) are ORM code
that the handlers (sessions_app/history_states.py) call through ``database_sync_to_async``;
``restore_patch`` does document work only (no database) and runs in a patch worker
(sessions_app/executors.py). The write of a restore is the patch's own (``session_patch_write``).

Bounds: a page holds at most ``PAGE_MAX`` revisions and ``PAGE_MAX`` changes, and each list at
most ``_list_budget()`` bytes of JSON (half of ``SESSIONS_MAX_MESSAGE_BYTES``, less the envelope),
so a reply fits in the frame size the server itself accepts; a change is summarised by its first
``SUMMARY_OPS`` operations, each with its ``op``, ``path`` and ``from`` cut to ``SUMMARY_CHARS``
characters and a ``value`` preview of ``PREVIEW_CHARS`` characters of JSON: no value is sent whole.
"""

import dataclasses
import logging
from typing import Any
from uuid import UUID

import jsonpatch
from django.db.models import TextField
from django.db.models.functions import Cast

from . import documents, protocol, selectors
from .conf import app_settings
from .models import Change, Membership, Revision, Role
from .patching import PatchBase
from .protocol import ProtocolError
from .work import OverBudget, Work, limit_for

logger = logging.getLogger(__name__)

PAGE_MAX = 50  # revisions, and changes, in one page at most (``limit``)
PAGE_DEFAULT = 20
SUMMARY_OPS = 5  # operations summarised per change; ``op_count`` says how many it has
SUMMARY_CHARS = 100  # characters kept of an operation's ``op``, ``path`` and ``from``
PREVIEW_CHARS = 120  # characters kept of the JSON text of an operation's ``value`` (an item fits)
_ENVELOPE = 512  # bytes left for the reply's envelope: state, id, version, the ``more_*`` flags


def _list_budget() -> int:
    """Bytes of JSON each of a page's two lists may take: half of ``SESSIONS_MAX_MESSAGE_BYTES``."""
    return max(0, (app_settings.MAX_MESSAGE_BYTES - _ENVELOPE) // 2)


def _by(author_id: int | None, username: str | None) -> dict[str, Any] | None:
    return {"id": author_id, "username": username} if author_id is not None else None


def _cut(text: Any, limit: int) -> str:
    """``text`` (a string, else its JSON) at most ``limit`` characters, ``…`` ending a cut one."""
    if not isinstance(text, str):
        text = protocol.encode(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _fit(items: list[dict[str, Any]], budget: int) -> tuple[list[dict[str, Any]], bool]:
    """The first of ``items`` whose JSON fits in ``budget`` bytes together (always the first one,
    so every page moves on), and whether any were left out."""
    kept: list[dict[str, Any]] = []
    used = 0
    for item in items:
        used += protocol.json_size(item) + 1
        if kept and used > budget:
            return kept, True
        kept.append(item)
    return kept, False


def _member_version(*, session_id: UUID, user_id: int) -> int:
    """The session's current version, if ``user_id`` is a member; raises NOT_FOUND otherwise."""
    version = Membership.objects.filter(session_id=session_id, user_id=user_id).values_list(
        "session__version", flat=True
    )
    found = version.first()
    if found is None:
        raise ProtocolError(protocol.NOT_FOUND, "No such session.")
    return found


def summarise_ops(ops: Any) -> list[dict[str, Any]]:
    """The first ``SUMMARY_OPS`` operations of a change as ``{"op", "path", "from"?, "value"?}``,
    each string cut to its bound (``value``: the JSON text of the operation's value)."""
    summary = []
    for op in ops[:SUMMARY_OPS] if isinstance(ops, list) else []:
        if not isinstance(op, dict):
            continue
        item = {"op": _cut(op.get("op", ""), SUMMARY_CHARS), "path": _cut(op.get("path", ""), SUMMARY_CHARS)}
        if "from" in op:
            item["from"] = _cut(op["from"], SUMMARY_CHARS)
        if "value" in op:
            value = op["value"]
            # JSON text, so "1" and 1 differ; a long string is cut before it is encoded.
            text = protocol.encode(value[:PREVIEW_CHARS] if isinstance(value, str) else value)
            item["value"] = _cut(text, PREVIEW_CHARS)
        summary.append(item)
    return summary


_REVISION_FIELDS = ("number", "version", "message", "size", "author_id", "author__username", "created_at")
_CHANGE_FIELDS = ("author_id", "author__username", "created_at", "restored")  # after version and ops


def history_page(
    *, user_id: int, session_id: UUID, before: int | None, changes_before: int | None, limit: int
) -> dict[str, Any]:
    """A page of the session's history, newest first, for any member.

    ``{"session", "version", "revisions": [{"number", "version", "message", "size", "by", "at"}],
    "more_revisions", "changes": [{"version", "by", "at", "op_count", "ops": [summary], "restored"?}],
    "more_changes"}``: the revisions numbered below ``before`` (all when None) and the kept changes
    below version ``changes_before``, at most ``limit`` of each and within the byte budget; ``by``
    is ``{"id", "username"}`` or None for a deleted user, ``size`` bytes of the revision's document.
    Reading the changes decodes their operations: at most ``SESSIONS_CHANGE_LOG_BYTES``, what a
    ``join`` with ``since`` sends. Raises NOT_FOUND for a session the user is not a member of.
    """
    version = _member_version(session_id=session_id, user_id=user_id)
    revisions = Revision.objects.filter(session_id=session_id).order_by("-number")
    if before is not None:
        revisions = revisions.filter(number__lt=before)
    revision_rows = list(revisions.values_list(*_REVISION_FIELDS)[: limit + 1])
    changes = Change.objects.filter(session_id=session_id).order_by("-version")
    if changes_before is not None:
        changes = changes.filter(version__lt=changes_before)
    change_rows = list(changes.values_list("version", Cast("ops", TextField()), *_CHANGE_FIELDS)[: limit + 1])
    revision_items = [
        {"number": n, "version": v, "message": m, "size": s, "by": _by(a, u), "at": protocol.utc_iso(at)}
        for n, v, m, s, a, u, at in revision_rows[:limit]
    ]
    change_items = []
    for number, ops_text, author_id, username, at, restored in change_rows[:limit]:
        ops = documents.load(ops_text)
        item = {
            "version": number,
            "by": _by(author_id, username),
            "at": protocol.utc_iso(at),
            "op_count": len(ops),
            "ops": summarise_ops(ops),
        }
        if restored is not None:
            item["restored"] = restored
        change_items.append(item)
    budget = _list_budget()
    kept_revisions, over_revisions = _fit(revision_items, budget)
    kept_changes, over_changes = _fit(change_items, budget)
    return {
        "session": str(session_id),
        "version": version,
        "revisions": kept_revisions,
        "more_revisions": over_revisions or len(revision_rows) > limit,
        "changes": kept_changes,
        "more_changes": over_changes or len(change_rows) > limit,
    }


def revision_get(*, user_id: int, session_id: UUID, number: int) -> dict[str, Any]:
    """One revision with its document, for any member: ``{"session", "number", "version",
    "message", "size", "by", "at", "data"}`` (``data`` at most ``SESSIONS_MAX_DOCUMENT_BYTES``, as
    a snapshot's). Raises NOT_FOUND for a session the user is not a member of, or no such revision.
    """
    _member_version(session_id=session_id, user_id=user_id)
    row = (
        Revision.objects.filter(session_id=session_id, number=number)
        .values_list("version", "message", "size", "author_id", "author__username", "created_at", "data")
        .first()
    )
    if row is None:
        raise ProtocolError(protocol.NOT_FOUND, f"This session has no revision {number}.")
    version, message, size, author_id, username, at, data = row
    return {
        "session": str(session_id),
        "number": number,
        "version": version,
        "message": message,
        "size": size,
        "by": _by(author_id, username),
        "at": protocol.utc_iso(at),
        "data": data,
    }


@dataclasses.dataclass(slots=True, frozen=True)
class RestoreBase:
    """What a restore starts from: the session as a patch finds it (``base``, its ``ops_text``
    still empty) and the revision's document as stored JSON text (``revision_text``)."""

    base: PatchBase
    number: int
    revision_text: str


def restore_base(*, user: dict[str, Any], session_id: UUID, number: int, version: int) -> RestoreBase:
    """Read what restoring revision ``number`` on ``version`` needs, checking it may be done.

    The documents come as the database's JSON text, not decoded (``restore_patch`` decodes them
    in a patch worker). Raises NOT_FOUND (not a member; no such revision), PERMISSION_DENIED (a
    viewer) and CONFLICT (``version`` is not the current one; ``data.version``), in that order.
    """
    role, current, log_end, text = selectors.patch_target(session_id=session_id, user_id=user["id"])
    if role == Role.VIEWER:
        raise ProtocolError(protocol.PERMISSION_DENIED, "Viewers cannot restore a revision.")
    revision_text = (
        Revision.objects.filter(session_id=session_id, number=number)
        .values_list(Cast("data", TextField()), flat=True)
        .first()
    )
    if revision_text is None:
        raise ProtocolError(protocol.NOT_FOUND, f"This session has no revision {number}.")
    if current != version:
        raise ProtocolError(
            protocol.CONFLICT, "The session has changed; rebase on the current version.", data={"version": current}
        )
    return RestoreBase(PatchBase(session_id, version, role, text, "", 0, log_end), number, revision_text)


def restore_patch(start: RestoreBase) -> tuple[PatchBase, list[dict[str, Any]], str] | None:
    """The patch that makes the document of ``start`` equal to its revision's: ``(base, ops,
    text)``, ``base`` with the patch's ``ops_text``, ``size`` and ``restored`` for
    ``session_patch_write``, ``text`` the resulting document; None when they are equal already.

    The operations are jsonpatch's ``make_patch`` from the current document to the revision's,
    applied as a patch is (``documents.apply_patch_text``, with the work budget of their size).
    When they would be larger than the revision's document, or past their work budget, the
    patch is the one operation ``replace`` of the whole document (path ``""``) instead: a
    restore's operations are so never much larger than a document (``SESSIONS_MAX_DOCUMENT_BYTES``)
    and never ``patch_too_costly``. Document work only: run it in a patch worker.
    """
    base = start.base
    current, target = documents.load(base.text), documents.load(start.revision_text)
    ops: list[dict[str, Any]] = jsonpatch.make_patch(current, target).patch
    if not ops:
        return None
    whole = [{"op": "replace", "path": "", "value": target}]
    ops_text = protocol.encode(ops)
    text = None
    if len(ops_text) <= len(start.revision_text) + 32:
        try:
            text = documents.apply_patch_text(base.text, ops, work=Work(limit_for(len(ops_text.encode()))))
        except OverBudget:
            logger.info("restoring r%d of %s: diff over budget, replacing the document", start.number, base.session_id)
    if text is None:
        ops, ops_text = whole, protocol.encode(whole)
        text = documents.apply_patch_text(base.text, ops, work=Work(limit_for(len(ops_text.encode()))))
    size = len(ops_text.encode())
    return dataclasses.replace(base, ops_text=ops_text, size=size, restored=start.number), ops, text
