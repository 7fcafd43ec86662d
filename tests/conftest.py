"""Shared fixtures: users, and the in-memory channel layer emptied between tests."""

from typing import Any

import pytest
from channels.layers import channel_layers

from tests.utils import make_user


@pytest.fixture(autouse=True)
def fresh_channel_layers() -> Any:
    """Each test gets new channel layer instances (the in-memory layer keeps groups per instance)."""
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture
async def alice() -> Any:
    return await make_user("alice")


@pytest.fixture
async def bob() -> Any:
    return await make_user("bob")


@pytest.fixture
async def carol() -> Any:
    return await make_user("carol")
