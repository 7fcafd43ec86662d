"""Helpers for scripts/test.sh: is a service up, and a fresh PostgreSQL database or Redis db.

python scripts/services.py redis-up URL       exit 0 when Redis answers PING
python scripts/services.py redis-flush URL    FLUSHDB on that Redis database
python scripts/services.py pg-up URL          exit 0 when PostgreSQL accepts a connection
python scripts/services.py pg-recreate URL    drop and create the database named in URL
"""

import sys
from urllib.parse import urlsplit, urlunsplit


def redis_client(url: str):  # -> redis.Redis (imported lazily)
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)


def pg_admin_url(url: str) -> tuple[str, str]:
    """The server's ``postgres`` maintenance database URL, and the database name in ``url``."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/postgres")), parts.path.lstrip("/")


def main(command: str, url: str) -> int:
    """Run one command; returns the exit status."""
    if command == "redis-up":
        try:
            return 0 if redis_client(url).ping() else 1
        except Exception:  # noqa: BLE001 - any failure means "not up"
            return 1
    if command == "redis-flush":
        redis_client(url).flushdb()
        return 0
    import psycopg

    admin, name = pg_admin_url(url)
    if command == "pg-up":
        try:
            with psycopg.connect(admin, connect_timeout=2):
                return 0
        except psycopg.Error:
            return 1
    if command == "pg-recreate":
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
