"""Reading a process channel from the inner layer, many messages per round trip where it can.

channels_redis' core layer receives one message per call, with four Redis commands for it (a Lua
clean-up of the in-flight backup, BZPOPMIN, ZADD to the backup, and ZPOPMIN of the backup in a
task; ``RedisChannelLayer.receive_single``). Under load a process's channel then fills faster
than it is read: the backlog grew and late pushes were dropped (issue 10). Here one pipelined
round trip waits for the first message (BZPOPMIN) and takes up to ``size - 1`` more (ZPOPMIN).

What this gives up: channels_redis' backup queue, which puts a message back if the receiving task
is cancelled between the pop and the hand-over. The reader is cancelled only when its loop ends,
so at most one batch in flight is lost then; the clients re-join by version (docs/protocol.md).

Other layers (channels_redis' pub/sub layer, the in-memory layer) already receive without a round
trip per message (a local queue filled by a subscription or by ``send``); they are read one
message per call through their own ``receive``.
"""

from collections.abc import Awaitable, Callable
from typing import Any

Batch = list[tuple[list[str] | None, dict[str, Any]]]


def receiver(inner: Any, channel: str, size: int) -> Callable[[], Awaitable[Batch]]:
    """A coroutine function returning the next messages of ``channel`` on ``inner``.

    Each item is ``(targets, message)``: ``targets`` lists the channel names the message was
    addressed to when the layer says (channels_redis' ``__asgi_channel__``), else None.
    """
    try:
        from channels_redis.core import RedisChannelLayer
    except ImportError:
        RedisChannelLayer = None
    if RedisChannelLayer is not None and isinstance(inner, RedisChannelLayer):
        return _core_receiver(inner, channel, size)

    async def receive() -> Batch:
        return [(None, await inner.receive(channel))]

    return receive


def _core_receiver(inner: Any, channel: str, size: int) -> Callable[[], Awaitable[Batch]]:
    """Batches from channels_redis' core layer: its sorted set of the channel's messages, keyed as
    ``RedisChannelLayer.send`` writes them (prefix + the name up to ``!``), scored by send time."""
    non_local = inner.non_local_name(channel)
    key = inner.prefix + non_local
    index = inner.consistent_hash(non_local)

    async def receive() -> Batch:
        pipe = inner.connection(index).pipeline(transaction=False)
        pipe.bzpopmin(key, timeout=inner.brpop_timeout)
        pipe.zpopmin(key, count=size - 1)
        first, rest = await pipe.execute()
        members = ([first[1]] if first else []) + [member for member, _score in rest]
        batch: Batch = []
        for member in members:
            message = inner.deserialize(member)
            targets = message.pop("__asgi_channel__", None)
            batch.append(([targets] if isinstance(targets, str) else targets, message))
        return batch

    return receive
