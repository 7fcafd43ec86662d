"""``manage.py demo_users``: create the demo users on first run and print their credentials."""

import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

CREDENTIALS_FILE = Path(settings.BASE_DIR) / ".demo-credentials"
DEMO_USERNAMES = ("demo", "demo2")


class Command(BaseCommand):
    """Creates ``demo`` and ``demo2`` with random passwords, kept in ``.demo-credentials`` (mode 600).

    Later runs print the same credentials; a user created or changed by hand is left alone.
    """

    help = "Create the demo users on first run and print their credentials."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000/", help="where the server will listen")

    def handle(self, *args: Any, **options: Any) -> None:
        known = _read_credentials()
        users = get_user_model().objects
        for username in DEMO_USERNAMES:
            if users.filter(username=username).exists():
                continue
            password = secrets.token_urlsafe(12)
            users.create_user(username=username, password=password)
            known[username] = password
        _write_credentials(known)
        self.stdout.write("Demo users (username / password), also in .demo-credentials:")
        for username in DEMO_USERNAMES:
            self.stdout.write(f"  {username} / {known.get(username, '(set by hand; not known here)')}")
        self.stdout.write(f"Open {options['url']} and sign in, or see the README for curl and websockets.")


def _read_credentials() -> dict[str, str]:
    if not CREDENTIALS_FILE.exists():
        return {}
    pairs = (line.split(" ", 1) for line in CREDENTIALS_FILE.read_text().splitlines() if " " in line)
    return {name: password for name, password in pairs}


def _write_credentials(known: dict[str, str]) -> None:
    CREDENTIALS_FILE.touch(mode=0o600, exist_ok=True)
    CREDENTIALS_FILE.write_text("".join(f"{name} {password}\n" for name, password in sorted(known.items())))
