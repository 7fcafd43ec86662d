"""A stale patch rebased on the changes since its version, in the patch's transaction
(sessions_app/patching.py): the change log's operations read in one query, then the pure rules of
sessions_app/rebase.py. Synchronous ORM code, in the database thread with the rest of the patch.
"""

import contextlib
from collections.abc import Iterator
from typing import Any
from uuid import UUID

from . import documents, protocol
from .conf import app_settings
from .models import Change
from .protocol import ProtocolError
from .rebase import RebaseConflict, rebase


class AlreadyApplied(Exception):
    """The log holds a change of the patch's author with the patch's key: ``version``, ``ops``."""

    def __init__(self, version: int, ops: list[Any]) -> None:
        super().__init__(version)
        self.version = version
        self.ops = ops


def refuse_duplicate(*, session_id: UUID, user_id: int, key: str) -> None:
    """Raise AlreadyApplied when the kept change log has a change by ``user_id`` with ``key``.

    Within the patch's transaction, before its conditional update: two patches with one key
    racing from two connections are serialised by the version (the loser conflicts, and its
    retry finds the winner's change here). The log's bounds are the window
    (``SESSIONS_CHANGE_LOG_KEEP``, ``SESSIONS_CHANGE_LOG_BYTES``); one lookup in the
    ``(session, key)`` index.
    """
    row = Change.objects.filter(session_id=session_id, author_id=user_id, key=key).values_list("version", "ops").first()
    if row is not None:
        raise AlreadyApplied(*row)


def conflict(current: Any, reason: str = "") -> ProtocolError:
    """The ``conflict`` error of a patch that cannot be applied on ``current`` (``data.version``)."""
    detail = f" ({reason})" if reason else ""
    return ProtocolError(
        protocol.CONFLICT,
        f"The session has changed{detail}; rebase on the current version.",
        data={"version": current},
    )


@contextlib.contextmanager
def applies_or_conflicts(rebased: bool, current: int) -> Iterator[None]:
    """Around the application of a patch's operations: for a rebased patch, an operation that
    cannot be applied (INVALID_DATA without ``data.limit``: a failed ``test``, a pointer that does
    not resolve, a ``move`` into its own child) becomes CONFLICT (``data.version`` = ``current``).
    The patch was made valid on its own version; what broke it is a change since, which the
    rules of sessions_app/rebase.py did not name a collision (e.g. a ``move`` whose target was
    moved under its source). A document that would grow past its limit stays INVALID_DATA."""
    try:
        yield
    except ProtocolError as error:
        if rebased and error.code == protocol.INVALID_DATA and "limit" not in (error.data or {}):
            raise conflict(current, f"after the changes since, {error.message[:160]}") from None
        raise


def too_old(version: int, newest: int) -> bool:
    """Whether a patch on ``version`` is too far behind ``newest`` to be rebased (or ahead of it)."""
    return version > newest or newest - version > app_settings.REBASE_MAX_CHANGES


def changes_since(session_id: UUID, version: int, current: int) -> list[list[Any]] | None:
    """The operations of the changes after ``version`` up to ``current``, oldest first, or None when
    the log no longer keeps them all (``SESSIONS_CHANGE_LOG_KEEP``, ``SESSIONS_CHANGE_LOG_BYTES``)."""
    rows = list(
        Change.objects.filter(session_id=session_id, version__gt=version, version__lte=current)
        .order_by("version")
        .values_list("ops", flat=True)
    )
    return rows if len(rows) == current - version else None


def rebase_stale(*, session_id: UUID, version: int, current: int, ops: list[Any], text: str) -> list[Any]:
    """``ops``, made on ``version``, as they apply to the session at ``current`` (whose document is
    the stored JSON ``text``, decoded only when a container's kind is needed).

    Raises ProtocolError(CONFLICT, ``data.version`` = ``current``) when ``version`` is ahead of
    ``current`` or more than ``SESSIONS_REBASE_MAX_CHANGES`` behind, when the log no longer keeps
    the changes since, when the patch collides with one of them, or past
    ``SESSIONS_REBASE_MAX_STEPS`` (sessions_app/rebase.py has the rules).
    """
    if too_old(version, current):
        raise conflict(current)
    changes = changes_since(session_id, version, current)
    if changes is None:
        raise conflict(current, "the changes since are no longer kept")
    loaded: list[Any] = []

    def document() -> Any:
        if not loaded:
            loaded.append(documents.load(text))
        return loaded[0]

    try:
        return rebase(ops, changes, document, max_steps=app_settings.REBASE_MAX_STEPS)
    except RebaseConflict as exc:
        raise conflict(current, exc.reason[:200]) from None
