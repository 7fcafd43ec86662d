"""This project, served by a real daphne, with a probe on password hashing and database threads.

``python -m daphne tests.apps.password_probe:application`` serves ``project.asgi.application``
with Django's own Argon2 and PBKDF2 ``encode`` and ``verify`` wrapped to record, for each call, the
thread it ran in (its name and its nice value) and how many ran at once, and Channels' database hop wrapped to
record the thread of every ``database_sync_to_async`` call. ``GET /probe`` answers those records
as JSON (``{"hashes": [...], "max_concurrent": n, "database_threads": [...]}``); every other
request goes to the project. For tests/test_passwords.py.
"""

import json
import os
import threading
from typing import Any

from channels import db
from django.contrib.auth import hashers

from project.asgi import application as project_application

_lock = threading.Lock()
_running = 0
_records: dict[str, Any] = {"hashes": [], "max_concurrent": 0, "database_threads": []}


def _this_thread() -> dict[str, Any]:
    ident = threading.get_native_id()
    return {"name": threading.current_thread().name, "id": ident, "nice": os.getpriority(os.PRIO_PROCESS, ident)}


def _probed(work: Any) -> Any:
    def probed(self: Any, *args: Any, **kwargs: Any) -> Any:
        global _running
        with _lock:
            _running += 1
            _records["max_concurrent"] = max(_records["max_concurrent"], _running)
            _records["hashes"].append(_this_thread())
        try:
            return work(self, *args, **kwargs)
        finally:
            with _lock:
                _running -= 1

    return probed


for _hasher in (hashers.Argon2PasswordHasher, hashers.PBKDF2PasswordHasher):
    _hasher.encode = _probed(_hasher.encode)
    _hasher.verify = _probed(_hasher.verify)

_thread_handler = db.DatabaseSyncToAsync.thread_handler


def _probed_thread_handler(self: Any, *args: Any, **kwargs: Any) -> Any:
    record = _this_thread()
    with _lock:
        if record not in _records["database_threads"]:
            _records["database_threads"].append(record)
    return _thread_handler(self, *args, **kwargs)


db.DatabaseSyncToAsync.thread_handler = _probed_thread_handler


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http" and scope["path"] == "/probe":
        with _lock:
            body = json.dumps(_records).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
        return
    await project_application(scope, receive, send)
