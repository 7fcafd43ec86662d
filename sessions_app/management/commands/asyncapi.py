"""``manage.py asyncapi``: write the socket's AsyncAPI 3.0 document (sessions_app/asyncapi.py)."""

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from sessions_app import asyncapi


class Command(BaseCommand):
    help = "Write the WebSocket protocol's AsyncAPI 3.0 document (JSON), generated from the state registry."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--file", "-o", help="Write to this file instead of standard output.")
        parser.add_argument("--host", default="localhost:8000", help="The server's host[:port] (default %(default)s).")
        parser.add_argument("--secure", action="store_true", help="wss rather than ws.")

    def handle(self, *args: Any, **options: Any) -> None:
        text = json.dumps(asyncapi.document(host=options["host"], secure=options["secure"]), indent=2) + "\n"
        if options["file"]:
            with open(options["file"], "w", encoding="utf-8") as out:
                out.write(text)
        else:
            self.stdout.write(text, ending="")
