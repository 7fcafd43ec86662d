"""The channel-layer groups of one connection, and which of them is its joined session's.

A collaborator of SessionConsumer (``consumer.groups``), made at the first subscription, so an
unauthenticated or idle connection holds none. Groups are joined with the channel layer's own
``group_add`` and left with ``group_discard``, as the Channels documentation teaches; the
consumer's ``session_push`` asks ``accepts`` whether a push to a group is still for it.
"""

import logging
from typing import TYPE_CHECKING, Any, Protocol

from . import events, metrics, oplog, protocol
from .protocol import ProtocolError

if TYPE_CHECKING:
    from .services import Outcome

logger = logging.getLogger(__name__)


class Member(Protocol):
    """What SessionGroups needs of its connection: Channels' names and the joined session's fields."""

    channel_name: str
    channel_layer: Any
    session_id: Any
    role: str | None
    session_version: int


class SessionGroups:
    """``names``: the groups joined (at most the session's, briefly two while switching, plus any
    an app's state joined through ``subscribe_group``); ``joined``: the joined session's group, or
    ``""``."""

    __slots__ = ("conn", "joined", "names")

    def __init__(self, conn: Member) -> None:
        self.conn = conn
        self.joined = ""
        self.names: tuple[str, ...] = ()

    def accepts(self, group: str, version: int) -> bool:
        """Whether a push to ``group`` at ``version`` (0: unversioned) is still for this connection.

        False once it left the group, and for a push of the joined session whose ``version`` it
        already has (from its join snapshot or a reply); True moves its ``session_version`` on.
        """
        if group not in self.names:
            metrics.push_dropped(metrics.LEFT)
            return False
        if version and group == self.joined:
            if version <= self.conn.session_version:
                metrics.push_dropped(metrics.SEEN)
                return False
            self.conn.session_version = version
        metrics.push_sent()
        return True

    async def add(self, group: str) -> None:
        """Join ``group`` on the channel layer (``group_add``): its pushes reach this connection.

        Raises ProtocolError(UNAVAILABLE) if the layer cannot be reached.
        """
        if group in self.names:
            return
        try:
            await self.conn.channel_layer.group_add(group, self.conn.channel_name)
        except Exception:  # noqa: BLE001 - logged with its traceback by sessions_app.oplog
            # Broad on purpose: channels_redis raises redis-py's, OSError and asyncio errors alike.
            oplog.LAYER.failed("group_add")
            metrics.layer_error(metrics.GROUP_ADD)
            raise ProtocolError(protocol.UNAVAILABLE, "Live updates are unavailable; reconnect later.") from None
        self.names = (*self.names, group)

    async def rejoin(self) -> None:
        """Add the connection to its groups again (``group_add`` is idempotent): after the layer
        failed, a restarted Redis has forgotten them. Raises what the layer raised."""
        for group in self.names:
            await self.conn.channel_layer.group_add(group, self.conn.channel_name)

    async def discard(self, group: str) -> None:
        """Leave ``group`` (``group_discard``); a layer failure is logged (the membership expires)."""
        if group not in self.names:
            return
        self.names = tuple(g for g in self.names if g != group)
        try:
            await self.conn.channel_layer.group_discard(group, self.conn.channel_name)
        except Exception:  # noqa: BLE001 - logged with its traceback by sessions_app.oplog
            oplog.LAYER.failed("group_discard")
            metrics.layer_error(metrics.GROUP_DISCARD)

    async def discard_unless_joined(self, session_id: Any) -> None:
        """Undo a session's ``add`` after a failed join, unless that session is the joined one."""
        group = events.session_group(session_id)
        if group != self.joined:
            await self.discard(group)

    async def enter(self, session_id: Any, role: str | None, version: int) -> None:
        """Make ``session_id`` the joined session, leaving the previous one's group."""
        group = events.session_group(session_id)
        await self.add(group)
        if self.joined and self.joined != group:
            await self.discard(self.joined)
        self.joined = group
        self.conn.session_id, self.conn.role, self.conn.session_version = session_id, role, version

    async def leave(self) -> None:
        """Forget the joined session and leave its group."""
        await self.discard(self.joined)
        self.joined = ""
        self.conn.session_id, self.conn.role, self.conn.session_version = None, None, 0

    async def discard_all(self) -> None:
        """Leave every group (when the connection ends)."""
        for group in self.names:
            await self.discard(group)


class GroupMembership:
    """The group methods of SessionConsumer (a base of it): its groups, made at the first use, and
    joining, leaving and publishing to them through a SessionGroups. Uses the consumer's
    ``_group_state`` (None until the first use)."""

    _group_state: SessionGroups | None = None  # made at the first subscription (``groups``)

    @property
    def groups(self) -> SessionGroups:
        """This connection's groups, made at the first use (an idle connection holds none)."""
        groups = self._group_state
        if groups is None:
            groups = self._group_state = SessionGroups(self)
        return groups

    async def channel_layer_back(self) -> None:
        """The layer answers again after failing (a stock layer's receive loop): add this
        connection's groups again, in case Redis restarted empty; raises what the layer raised."""
        if self._group_state is not None:
            await self._group_state.rejoin()

    async def subscribe_group(self, group: str) -> None:
        """Join ``group`` (``group_add``); raises ProtocolError(UNAVAILABLE) without the layer."""
        await self.groups.add(group)

    async def unsubscribe_group(self, group: str) -> None:
        """Leave ``group`` (``group_discard``); a layer failure is logged."""
        await self.groups.discard(group)

    async def subscribe(self, session_id: Any) -> None:
        """Subscribe to a session's pushes (before reading it, so that none is missed)."""
        await self.groups.add(events.session_group(session_id))

    async def unsubscribe_unless_joined(self, session_id: Any) -> None:
        """Undo ``subscribe`` after a failed join, unless that session is the joined one."""
        await self.groups.discard_unless_joined(session_id)

    async def enter_session(self, outcome: "Outcome") -> None:
        """Make ``outcome``'s session the joined one, leaving the previous one's group."""
        await self.groups.enter(outcome.session_id, outcome.role, outcome.version)
        await self.publish(outcome.pushes)

    async def leave_session(self, pushes: list[events.Event]) -> None:
        """Forget the joined session and leave its group."""
        await self.groups.leave()
        await self.publish(pushes)

    async def publish(self, pushes: list[events.Event]) -> None:
        """Broadcast events after their change committed; a layer failure is logged, not raised."""
        await events.apublish(pushes)
