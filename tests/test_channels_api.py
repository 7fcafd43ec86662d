"""Channels code works here as the Channels documentation writes it, across two daphne processes.

Two real daphne processes serve tests.apps.channels_way (this project plus states that call
``channel_layer.group_add``, ``group_send`` to a typed handler method, and ``channel_layer.send``
to a connection's ``channel_name``) on a private Redis, with both channels_redis layers, wrapped
in sessions_app.layers.FanoutChannelLayer (the default) and alone (CHANNEL_LAYER_FANOUT=0).
"""

import pytest

from tests import wsclient

pytestmark = [pytest.mark.redis, pytest.mark.slow]

LAYERS = {
    "core": "channels_redis.core.RedisChannelLayer",
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
}


@pytest.mark.parametrize("fanout", ["1", "0"], ids=["fanout-layer", "stock-layer"])
@pytest.mark.parametrize("backend", list(LAYERS), ids=list(LAYERS))
async def test_group_add_group_send_and_send_to_a_channel_name_cross_two_daphne_processes(started, backend, fanout):
    redis = started.redis()
    database = started.sqlite()
    first, second = (
        started.daphne(
            database,
            redis.url,
            application="tests.apps.channels_way:application",
            CHANNEL_LAYER_BACKEND=LAYERS[backend],
            CHANNEL_LAYER_FANOUT=fanout,
        )
        for _ in range(2)
    )
    async with wsclient.clients() as opened:
        alice = await wsclient.login(first.ws, first.token("alice"))
        bob = await wsclient.login(second.ws, second.token("bob"))
        carol = await wsclient.login(second.ws, second.token("carol"))
        opened.extend([alice, bob, carol])

        await alice.ok("lobby_join", {"room": "blue"})
        bob_channel = (await bob.ok("lobby_join", {"room": "blue"}))["channel"]
        await carol.ok("lobby_join", {"room": "red"})

        # group_send on one process reaches the typed handler of the group's members on both.
        await bob.ok("lobby_say", {"room": "blue", "text": "hello"})
        for member in (alice, bob):
            pushed = await member.push("lobby")
            assert pushed["data"] == {"room": "blue", "text": "hello", "from": "bob"}
        await carol.no_push("lobby", 0.3)

        # channel_layer.send to a channel name reaches that one connection, across processes.
        await alice.ok("direct", {"to": bob_channel, "text": "psst"})
        assert (await bob.push("direct"))["data"] == {"text": "psst", "from": "alice"}
        await alice.no_push("direct", 0.2)

        # group_discard: no more messages for that connection.
        await bob.ok("lobby_leave", {"room": "blue"})
        await alice.ok("lobby_say", {"room": "blue", "text": "still there?"})
        assert (await alice.push("lobby"))["data"]["text"] == "still there?"
        await bob.no_push("lobby", 0.3)

    for server in (first, second):
        assert "Traceback" not in server.log() and " ERROR " not in server.log(), server.log()
