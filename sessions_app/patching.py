"""Writes: a patch to a session's document (the ``patch`` state), in one database hop for a small
document, or in two around a patch worker for a large one (sessions_app/executors.py). Synchronous
ORM code, called through ``database_sync_to_async``; ``services`` re-exports these.
"""

import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.db import connection, transaction
from django.utils import timezone

from . import documents, events, protocol, rebasing, selectors
from .conf import app_settings
from .events import Outcome
from .models import Change, Membership, Role, Session
from .protocol import ProtocolError
from .work import OverBudget, Work, limit_for

logger = logging.getLogger(__name__)


class NeedsWorker(Exception):
    """Raised by ``session_patch(inline_work=...)`` for a patch to apply in a patch worker:
    ``base`` is what it applies to (sessions_app/executors.py), ``ops`` the operations to apply
    (rebased when the patch was stale), ``session_patch_write`` stores it."""

    def __init__(self, base: "PatchBase", ops: list[Any]) -> None:
        super().__init__(base.session_id)
        self.base = base
        self.ops = ops


@dataclass(slots=True, frozen=True)
class PatchBase:
    """A session as a patch found it, and the patch: ``text`` is its document as stored JSON at
    ``version``, ``role`` the user's, ``ops_text`` the patch's operations as compact JSON (``size``
    bytes) and ``log_end`` the session's ``log_end`` (where the patch's change starts in its log).
    ``restored``: the number of the revision the patch restores (``restore``, sessions_app/history.py),
    kept with its change and pushed as ``patched``'s ``restored``. ``rebased``: the patch named an
    older version and its operations were rebased on the changes since (sessions_app/rebasing.py);
    the reply then carries them. ``key``: the patch's idempotency key ("" for none), kept with its
    change."""

    session_id: UUID
    version: int
    role: str
    text: str
    ops_text: str
    size: int
    log_end: int
    restored: int | None = None
    rebased: bool = False
    key: str = ""


def session_patch(
    *,
    user: dict[str, Any],
    channel_name: str,
    session_id: UUID,
    version: int,
    ops: list[Any],
    editor: bool = False,
    inline_work: int | None = None,
    key: str = "",
) -> Outcome:
    """Apply an RFC 6902 patch (the jsonpatch library) made on ``version``; returns ``{"version":
    new}``, with ``"rebased": true`` and the ``ops`` as applied when ``version`` was not the current
    one and the patch was rebased on the changes since (sessions_app/rebasing.py).

    The document, the version bump and the change-log row commit together. The update is
    conditional on the version and on the user's role (``UPDATE ... WHERE version = n AND EXISTS
    (editor or owner)``), so concurrent patches from several processes never lose an update: the
    loser gets ProtocolError(CONFLICT) with the current version in ``data`` (its client sends it
    again and it is rebased then), as does a stale patch that collides with a change since, or is
    more than ``SESSIONS_REBASE_MAX_CHANGES`` versions behind. Also raises NOT_FOUND,
    PERMISSION_DENIED (viewer), INVALID_DATA (an operation that cannot be applied, a failed
    ``test``, a result that is not an object or is too large) and PATCH_TOO_COSTLY (past the work
    budget of the patch's size, sessions_app/work.py). Trims the change log to
    ``SESSIONS_CHANGE_LOG_KEEP`` entries and ``SESSIONS_CHANGE_LOG_BYTES`` bytes of operations.

    ``editor``: the caller knows the user may edit (a viewer must get PERMISSION_DENIED, not
    CONFLICT), so a patch on a version too far behind one this process has seen conflicts at once.

    ``key``: the patch's idempotency key. When the change log already holds a change of this user
    with that key, nothing is applied and the reply is that change's: ``{"version", "duplicate":
    true, "ops"}`` (a client that lost a reply sends the patch again, safely).

    ``inline_work``: the caller runs this in the database thread every connection shares
    (``handlers.call``). The patch is applied here only when the stored document is at most
    ``SESSIONS_PATCH_INLINE_BYTES`` characters and the patch visits at most ``inline_work``
    nodes; otherwise NeedsWorker is raised, before anything is written, for the caller to apply
    it in a patch worker and store it with ``session_patch_write``.
    """
    _refuse_stale(session_id, version, editor)
    with _seeing_versions(session_id), transaction.atomic():
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                base, applied = _patch_base_rebased(user=user, session_id=session_id, version=version, ops=ops, key=key)
            except rebasing.AlreadyApplied as done:
                return Outcome({"version": done.version, "duplicate": True, "ops": done.ops}, [], session_id, None, 0)
            limit = limit_for(base.size)
            if inline_work is not None and len(base.text) > app_settings.PATCH_INLINE_BYTES:
                raise NeedsWorker(base, applied)
            work = Work(limit if inline_work is None else min(limit, inline_work))
            try:
                with rebasing.applies_or_conflicts(base.rebased, base.version):
                    text = documents.apply_patch_text(base.text, applied, work=work)
            except OverBudget:
                if work.limit < limit:
                    raise NeedsWorker(base, applied) from None
                raise
            try:
                outcome = _patch_write(user=user, channel_name=channel_name, base=base, ops=applied, text=text)
            except _LostRace:
                if attempt + 1 == _WRITE_ATTEMPTS:
                    raise
                continue  # another process stored a change after our read: rebase on it too
            break
    _saw_version(session_id, outcome.version)
    return outcome


# A patch whose conditional update found the version moved since its read (another process's
# patch committed in between) is read, rebased and applied again, in the same transaction (READ
# COMMITTED: each statement sees what was committed before it), at most this many times in all.
_WRITE_ATTEMPTS = 3


class _LostRace(ProtocolError):
    """The conflict of a conditional update that found the version moved since the read."""


def session_patch_write(
    *, user: dict[str, Any], channel_name: str, base: PatchBase, ops: list[Any], text: str
) -> Outcome:
    """Store ``text``, the document of ``base`` with ``ops`` applied (in a patch worker), as the
    next version; returns ``{"version": new}``.

    The second half of a patch that ``session_patch`` handed on with NeedsWorker: the same
    conditional update (version and role) in one short transaction, so what changed meanwhile is
    a CONFLICT (or NOT_FOUND, PERMISSION_DENIED for a membership that changed), never lost.
    """
    with _seeing_versions(base.session_id), transaction.atomic():
        outcome = _patch_write(user=user, channel_name=channel_name, base=base, ops=ops, text=text)
    _saw_version(base.session_id, outcome.version)
    return outcome


# The newest version of each session this process has committed or found in the database. Versions
# only grow, so a patch based on an older one cannot succeed: ``session_patch`` answers it at once,
# without the transaction and queries, when it runs (in the one database thread, so behind every
# patch queued before it). Under load, members of a busy session retry on versions that went stale
# while they waited; without this each retry cost as much as an accepted patch, and the retries
# made the queue, and so the conflicts, grow. Bounded: cleared past _VERSIONS_SEEN_MAX sessions.
_versions_seen: dict[UUID, int] = {}
_VERSIONS_SEEN_MAX = 10_000


def _saw_version(session_id: UUID, version: int | None) -> None:
    if version is not None and version > _versions_seen.get(session_id, 0):
        if len(_versions_seen) >= _VERSIONS_SEEN_MAX:
            _versions_seen.clear()
        _versions_seen[session_id] = version


def _refuse_stale(session_id: UUID, version: int, editor: bool) -> None:
    seen = _versions_seen.get(session_id, 0)
    if editor and version < seen and rebasing.too_old(version, seen):
        raise rebasing.conflict(seen)


@contextmanager
def _seeing_versions(session_id: UUID) -> Iterator[None]:
    """Record the version a conflict reports (the versions of accepted patches: _patch_write)."""
    try:
        yield
    except ProtocolError as exc:
        if exc.code == protocol.CONFLICT and exc.data:
            _saw_version(session_id, exc.data.get("version"))
        raise


def _conflict(version: Any) -> ProtocolError:
    return rebasing.conflict(version)


def _patch_base_rebased(
    *, user: dict[str, Any], session_id: UUID, version: int, ops: list[Any], key: str
) -> tuple[PatchBase, list[Any]]:
    """The session as the patch finds it, at its current version, and the operations to apply
    there: ``ops`` themselves when ``version`` is current, else rebased on the changes since.
    Raises rebasing.AlreadyApplied for a ``key`` the user's changes in the log already have."""
    role, current, log_end, text = selectors.patch_target(session_id=session_id, user_id=user["id"])
    if role == Role.VIEWER:
        raise ProtocolError(protocol.PERMISSION_DENIED, "Viewers cannot change the session.")
    if key:
        rebasing.refuse_duplicate(session_id=session_id, user_id=user["id"], key=key)
    rebased = current != version
    if rebased:
        ops = rebasing.rebase_stale(session_id=session_id, version=version, current=current, ops=ops, text=text)
    ops_text = protocol.encode(ops)
    size = len(ops_text.encode())
    return PatchBase(session_id, current, role, text, ops_text, size, log_end, rebased=rebased, key=key), ops


def _patch_base(*, user: dict[str, Any], session_id: UUID, version: int, ops_text: str) -> PatchBase:
    role, current, log_end, text = selectors.patch_target(session_id=session_id, user_id=user["id"])
    if role == Role.VIEWER:
        raise ProtocolError(protocol.PERMISSION_DENIED, "Viewers cannot change the session.")
    if current != version:
        raise _conflict(current)
    return PatchBase(session_id, version, role, text, ops_text, len(ops_text.encode()), log_end)


@functools.cache
def _write_sql(vendor: str) -> tuple[str, str, str]:
    """The update, insert and trim statements of a patch for ``vendor``'s quoting, built once.

    One statement each, as presence.py's connection rows: built with the ORM (a conditional
    update with ``EXISTS``, an insert), a small patch cost ~2 ms of CPU in-process on SQLite,
    almost all of it building the queries; with these, ~0.2 ms. The document and the operations
    are passed as the JSON text the worker made (``jsonb`` cast on PostgreSQL; text, as Django
    stores a JSONField, on SQLite): never decoded and encoded again here.
    """
    quote = connection.ops.quote_name
    sessions, changes, members = (quote(model._meta.db_table) for model in (Session, Change, Membership))
    json = "%s::jsonb" if vendor == "postgresql" else "%s"
    update = (
        f"UPDATE {sessions} SET data = {json}, version = %s, updated_at = %s, log_end = %s "  # noqa: S608 - table names
        f"WHERE id = %s AND version = %s AND EXISTS (SELECT 1 FROM {members} "
        "WHERE session_id = %s AND user_id = %s AND role IN (%s, %s))"
    )
    insert = (
        f"INSERT INTO {changes} (session_id, version, ops, start, author_id, created_at, restored, key) "  # noqa: S608
        f"VALUES (%s, %s, {json}, %s, %s, %s, %s, %s)"
    )
    trim = f"DELETE FROM {changes} WHERE session_id = %s AND (version <= %s OR start < %s)"  # noqa: S608
    return update, insert, trim


def _patch_write(*, user: dict[str, Any], channel_name: str, base: PatchBase, ops: list[Any], text: str) -> Outcome:
    session_id, version = base.session_id, base.version
    new_version = version + 1
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    pk = Session._meta.pk.get_db_prep_value(session_id, connection)  # type: ignore[union-attr]
    log_end = base.log_end + base.size
    update, insert, trim = _write_sql(connection.vendor)
    with connection.cursor() as cursor:
        # Conditional on the version it was read at and on the user still being an editor.
        cursor.execute(update, [text, new_version, now, log_end, pk, version, pk, user["id"], Role.OWNER, Role.EDITOR])
        updated = cursor.rowcount
        if updated:
            row = [pk, new_version, base.ops_text, base.log_end, user["id"], now, base.restored, base.key]
            cursor.execute(insert, row)
            # The log keeps at most CHANGE_LOG_KEEP changes and CHANGE_LOG_BYTES bytes: the changes
            # kept are those that start at most that many bytes before its end (a change larger
            # than the bound is not kept; a join since before it gets the snapshot).
            keep, limit = app_settings.CHANGE_LOG_KEEP, app_settings.CHANGE_LOG_BYTES
            if new_version > keep or log_end > limit:
                cursor.execute(trim, [pk, new_version - keep, log_end - limit])
    if not updated:
        current = Session.objects.filter(pk=session_id).values_list("version", flat=True).first()
        if current is None or current == version:  # the session or the membership changed meanwhile
            _patch_base(user=user, session_id=session_id, version=version, ops_text=base.ops_text)
        lost = _conflict(current)
        raise _LostRace(lost.code, lost.message, data=lost.data)
    pushed = {"session": str(session_id), "version": new_version, "ops": ops, "by": _by(user)}
    if base.restored is not None:
        pushed["restored"] = base.restored
    push = events.push(session_id, "patched", pushed, exclude=channel_name, version=new_version)
    reply: dict[str, Any] = {"version": new_version}
    if base.rebased:
        reply.update(rebased=True, ops=ops)
    return Outcome(reply, [push], session_id, base.role, new_version)


def _by(user: dict[str, Any]) -> dict[str, Any]:
    return {"id": user["id"], "username": user["username"]}
