"""Shared fixtures: users, the in-memory channel layer emptied between tests, live servers."""

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers

from sessions_app import process
from sessions_app.registry import REGISTRY
from tests import live
from tests.utils import make_user


@pytest.fixture(autouse=True)
def fresh_channel_layers() -> Any:
    """Each test gets new channel layer instances (the in-memory layer keeps groups per instance)."""
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture(autouse=True)
async def stop_process_tasks() -> Any:
    """After each test, stop this process's heartbeat, account listener and channel-layer readers, and wait for the
    database work they queued: pytest-django flushes the test database next, and SQLite fails
    the flush while another thread holds a table lock.
    """
    yield
    readers = [layer.stop() for layer in channel_layers.backends.values() if hasattr(layer, "stop")]
    tasks = [task for task in process._tasks.values() if not task.done()] + [r for r in readers if r is not None]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    process._tasks.clear()
    await sync_to_async(lambda: None)()  # thread-sensitive: runs after the queued database work


@pytest.fixture
def registry() -> Any:
    """The live state registry; states a test registers are removed afterwards."""
    before = dict(REGISTRY)
    yield REGISTRY
    REGISTRY.clear()
    REGISTRY.update(before)


@pytest.fixture
async def alice() -> Any:
    return await make_user("alice")


@pytest.fixture
async def bob() -> Any:
    return await make_user("bob")


@pytest.fixture
async def carol() -> Any:
    return await make_user("carol")


@pytest.fixture
def started(tmp_path: Path) -> Iterator[live.Processes]:
    """Starts real servers and databases for the test (tests/live.py); all stopped after it."""
    with live.processes(tmp_path) as processes:
        yield processes
