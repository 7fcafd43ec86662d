"""Password hashing that cannot starve the sockets: Django's hashers, run in a small pool of
low-priority threads.

A password check costs a fixed amount of CPU on purpose (Argon2: about 0.2 s and 100 MiB here;
PBKDF2 with Django 5.2's 1,000,000 iterations: about 0.4 s). Under ASGI every sync request runs in
a thread of its own (Django's ``ASGIHandler`` gives each request its own thread-sensitive context),
so sixteen concurrent sign-ins meant sixteen hashes competing for the CPU with the event loop and
the database thread that serve every socket: on two cores, 16 concurrent bad logins took the
``list`` round trip from 4 to 18 ms p50 (60 ms p99) and a correct sign-in 2.8 s
(``bench/login_stall.py``).

Here the hashers' work (``encode``, ``verify``, ``harden_runtime``) runs in ``HASH_THREADS``
threads whose scheduling priority is lowered (nice +``HASH_NICENESS``; on Linux the priority is per
thread, and the threads Argon2 starts for its lanes inherit it): the hashes use the CPU the event
loop and the database thread leave, concurrent sign-ins queue for a thread instead of all running
at once, and memory stays bounded (Argon2 takes 100 MiB per running hash). The calling thread,
a request's own, waits without using the CPU. Where the priority cannot be lowered (not Linux),
the pool still bounds how many hashes run at once.

The hashers keep Django's algorithm names and parameters: hashes made by Django's own classes are
read and written unchanged, and ``PASSWORD_HASHERS`` lists these classes where Django's would be.
"""

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.contrib.auth import hashers

logger = logging.getLogger(__name__)

# Hashes that may run at once. Each Argon2 hash already runs its 8 lanes in parallel threads.
HASH_THREADS = max(1, min(4, os.cpu_count() or 1))
# Added to the pool threads' nice value (0 to 19): they yield the CPU to the process's other threads.
HASH_NICENESS = 10
THREAD_NAME_PREFIX = "password-hash"


def _lower_priority() -> None:
    """Called in each pool thread as it starts: lower this thread's scheduling priority."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + HASH_NICENESS))
    except (AttributeError, OSError):  # not Linux: the pool still bounds the concurrency
        logger.debug("cannot lower the priority of password hashing threads", exc_info=True)


_pool = ThreadPoolExecutor(max_workers=HASH_THREADS, thread_name_prefix=THREAD_NAME_PREFIX, initializer=_lower_priority)


def in_pool(function: Any, *args: Any) -> Any:
    """``function(*args)`` run in a password-hashing thread; the caller waits for its result.

    Must not be called from the event loop (it blocks until the hash is done) nor from a pool
    thread (it would wait for itself when every thread is busy); a pool thread runs it in place.
    """
    if threading.current_thread().name.startswith(THREAD_NAME_PREFIX):
        return function(*args)
    return _pool.submit(function, *args).result()


class PooledHasherMixin:
    """Runs a Django hasher's CPU work (``encode``, ``verify``, ``harden_runtime``) in the pool."""

    def encode(self, password: str, salt: str, *args: Any, **kwargs: Any) -> str:
        return in_pool(lambda: super(PooledHasherMixin, self).encode(password, salt, *args, **kwargs))

    def verify(self, password: str, encoded: str) -> bool:
        return in_pool(super().verify, password, encoded)

    def harden_runtime(self, password: str, encoded: str) -> None:
        in_pool(super().harden_runtime, password, encoded)


class Argon2PasswordHasher(PooledHasherMixin, hashers.Argon2PasswordHasher):
    """Django's Argon2 hasher (argon2-cffi, which releases the GIL), run in the pool. The default."""


class PBKDF2PasswordHasher(PooledHasherMixin, hashers.PBKDF2PasswordHasher):
    """Django's PBKDF2 hasher, run in the pool: checks the hashes made before Argon2 was the
    default, which Django rewrites with the default hasher at the user's next sign-in."""
