"""The consumer's channel-layer side: reading the layer, session groups, and pushes.

A mixin of SessionConsumer (sessions_app.consumers), kept apart so that the consumer module holds
the protocol only. It expects the consumer's ``channel_layer``, ``channel_name``, ``closing`` and
``send``; the state it keeps is declared on SessionConsumer.
"""

import asyncio
import logging
from typing import Any

from channels.exceptions import StopConsumer
from channels.layers import get_channel_layer
from channels.utils import await_many_dispatch

from . import events, services
from .protocol import UNAVAILABLE, ProtocolError

logger = logging.getLogger(__name__)


class SessionGroupsMixin:
    """Channel-layer reading, group membership and push delivery for one connection."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Run the connection: client frames and channel-layer messages, one at a time, in order.

        As Channels' ``AsyncConsumer.__call__``, except that the channel layer is read through
        ``_layer_receive``, which survives a Redis outage instead of ending the consumer (and the
        socket, with 1011) on the first connection error.
        """
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        self.base_send = send
        try:
            await await_many_dispatch([receive, self._layer_receive], self.dispatch)
        except StopConsumer:
            pass
        finally:
            # daphne cancels an application still running application_close_timeout (10 s) after
            # its client left, e.g. one stuck in a slow handler: clean up all the same (shielded,
            # so the cancellation does not cut it short).
            if not self._cleaned_up:
                self._cleaned_up = True
                await asyncio.shield(self._cleanup())

    async def _layer_receive(self) -> dict[str, Any]:
        """The next channel-layer message for this connection, retrying while the layer is down.

        After an outage the connection's groups are added again: a restarted Redis (which keeps
        nothing on disk here) has forgotten them, and group_add is idempotent.
        """
        if not self._groups:
            # Nothing can arrive before the first group_add: wait for it without touching the
            # layer (no receive buffer, no BRPOP) — most of an idle connection's layer cost.
            self._layer_wanted = asyncio.get_running_loop().create_future()
            await self._layer_wanted
        delay = 0.2
        while True:
            try:
                if self._layer_failed:
                    for group in self._groups:
                        await self.channel_layer.group_add(group, self.channel_name)
                    self._layer_failed = False
                    logger.info("channel layer is back; groups restored for %s", self.channel_name)
                return await self.channel_layer.receive(self.channel_name)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Broad on purpose: channels_redis raises redis-py's, OSError and asyncio errors alike.
                if not self._layer_failed:
                    logger.warning("channel layer receive failed; retrying", exc_info=True)
                self._layer_failed = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def subscribe_group(self, group: str) -> None:
        """Add this connection to ``group``; raises ProtocolError(UNAVAILABLE) if the layer fails."""
        if group in self._groups:
            return
        try:
            await self.channel_layer.group_add(group, self.channel_name)
        except Exception:
            # Broad on purpose: channels_redis raises redis-py's, OSError and asyncio errors alike.
            logger.warning("channel layer unavailable for group_add", exc_info=True)
            raise ProtocolError(UNAVAILABLE, "Live updates are unavailable; reconnect later.") from None
        self._groups = (*self._groups, group)
        if self._layer_wanted is not None and not self._layer_wanted.done():
            self._layer_wanted.set_result(None)

    async def refresh_groups(self) -> None:
        """Add this connection to its groups again (they expire in channels_redis); failures are logged."""
        for group in self._groups:
            try:
                await self.channel_layer.group_add(group, self.channel_name)
            except Exception:
                logger.warning("channel layer unavailable for a group refresh", exc_info=True)
                return

    async def unsubscribe_group(self, group: str) -> None:
        """Remove this connection from ``group``; a layer failure is logged (the group expires)."""
        if group not in self._groups:
            return
        self._groups = tuple(g for g in self._groups if g != group)
        try:
            await self.channel_layer.group_discard(group, self.channel_name)
        except Exception:
            logger.warning("channel layer unavailable for group_discard", exc_info=True)

    async def subscribe(self, session_id: Any) -> None:
        """Subscribe to a session's pushes (before reading it, so that none is missed)."""
        await self.subscribe_group(events.session_group(session_id))

    async def unsubscribe_unless_joined(self, session_id: Any) -> None:
        """Undo ``subscribe`` after a failed join, unless that session is the joined one."""
        group = events.session_group(session_id)
        if group != self._session_group:
            await self.unsubscribe_group(group)

    async def enter_session(self, outcome: services.Outcome) -> None:
        """Make ``outcome``'s session the joined one, leaving the previous one's group."""
        group = events.session_group(outcome.session_id)
        await self.subscribe_group(group)
        if self._session_group and self._session_group != group:
            await self.unsubscribe_group(self._session_group)
        self._session_group = group
        self.session_id, self.role, self.session_version = outcome.session_id, outcome.role, outcome.version
        await self.publish(outcome.pushes)

    async def leave_session(self, pushes: list[events.Event]) -> None:
        """Forget the joined session and leave its group."""
        await self.unsubscribe_group(self._session_group)
        self._session_group, self.session_id, self.role, self.session_version = "", None, None, 0
        await self.publish(pushes)

    async def publish(self, pushes: list[events.Event]) -> None:
        """Broadcast events after their change committed; a layer failure is logged, not raised."""
        await events.apublish(pushes)

    # --- channel-layer messages ----------------------------------------------------------------------

    async def session_push(self, message: dict[str, Any]) -> None:
        """Called for a push to a joined session's group: forward its pre-encoded text."""
        if self.closing or message["exclude"] == self.channel_name or message.get("group") != self._session_group:
            return
        version = message.get("version", 0)
        if version:
            if version <= self.session_version:
                return  # already in this connection's snapshot or reply
            self.session_version = version
        await self.send(text_data=message["text"])
