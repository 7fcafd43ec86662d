"""The history states (docs/protocol.md, section 4): ``revisions``, ``revision`` and ``restore``.

Registered by name like sessions_app/handlers.py's states, whose ``call`` (one database hop, in
the user's turn) they use; the reads and the restore's document work are in sessions_app/history.py.
"""

from typing import Any

from . import executors, history, protocol, replies, services
from .handlers import call
from .models import Role
from .protocol import ProtocolError
from .registry import Connection, state
from .serializers import RestoreSchema, RevisionSchema, RevisionsSchema


@state("revisions", schema=RevisionsSchema, needs_session=True, reply=replies.HistoryPageSerializer)
async def revisions(conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
    """Any member: a page of the joined session's revisions and kept changes, newest first.

    ``{"before"?, "changes_before"?, "limit"?}`` -> ``history.history_page``'s reply. Errors:
    not_found (no longer a member), invalid_data.
    """
    return await call(
        history.history_page,
        user_id=conn.user["id"],
        session_id=conn.session_id,
        before=data["before"],
        changes_before=data["changes_before"],
        limit=data["limit"],
    )


@state("revision", schema=RevisionSchema, needs_session=True, reply=replies.RevisionViewSerializer)
async def revision(conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
    """Any member: one revision with its document, ``{"number"}`` -> ``history.revision_get``'s
    reply. Errors: not_found (no such revision, or no longer a member), invalid_data."""
    return await call(history.revision_get, user_id=conn.user["id"], session_id=conn.session_id, number=data["number"])


@state("restore", schema=RestoreSchema, needs_session=True, reply=replies.RestoreReply)
async def restore(conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
    """Owner or editor: make the document equal to revision ``number``'s, as one new change on
    ``version``: ``{"number", "version"}`` -> ``{"version": new, "revision": number, "ops": [...]}``.

    The change is a patch like any (``patched`` to the session's other connections, with
    ``restored``; kept in the change log, so ``join`` with ``since`` replays it), made by the
    patch's own write: conditional on ``version`` and on the role, durable before the reply. Three
    steps: read both documents (one database hop), diff them in a patch worker
    (``history.restore_patch``), store the result (``services.session_patch_write``). ``ops`` are
    the operations the change applied, for the caller to apply to its copy at ``version``; none
    (and no new version, no push) when the document already equals the revision. Errors:
    permission_denied (a viewer), not_found (no such revision), conflict (``version`` is not the
    current one, ``data.version``), invalid_data.
    """
    if data["version"] < conn.session_version and conn.role != Role.VIEWER:
        raise ProtocolError(
            protocol.CONFLICT,
            "The session has changed; rebase on the current version.",
            data={"version": conn.session_version},
        )
    start = await call(
        history.restore_base,
        user=conn.user,
        session_id=conn.session_id,
        number=data["number"],
        version=data["version"],
    )
    prepared = await executors.in_patch_worker(history.restore_patch, start)
    if prepared is None:
        return {"version": start.base.version, "revision": start.number, "ops": []}
    base, ops, text = prepared
    outcome = await call(
        services.session_patch_write, user=conn.user, channel_name=conn.channel_name, base=base, ops=ops, text=text
    )
    conn.session_version = max(conn.session_version, outcome.version)
    await conn.publish(outcome.pushes)
    return {**outcome.data, "revision": start.number, "ops": ops}
