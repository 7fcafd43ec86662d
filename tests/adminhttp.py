"""Django's admin driven over HTTP on a live server (sign-in, CSRF, actions), with the standard
library only: for tests that run the admin on one daphne process and watch another."""

from __future__ import annotations

import http.cookiejar
import re
import ssl
import urllib.request
from typing import Any
from urllib.parse import urlencode


class Admin:
    """A signed-in browser of Django's admin on a live server (cookies, CSRF), through urllib."""

    def __init__(self, base: str, username: str, password: str, *, context: ssl.SSLContext | None = None) -> None:
        """Sign in at ``base`` (``context``: the TLS context of an https:// base)."""
        self.http = base
        self.cookies = http.cookiejar.CookieJar()
        handlers: list[Any] = [urllib.request.HTTPCookieProcessor(self.cookies)]
        if context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=context))
        self.opener = urllib.request.build_opener(*handlers)
        status, page = self.post("/admin/login/", {"username": username, "password": password, "next": "/admin/"})
        assert status == 200 and "Log out" in page, f"admin sign-in failed ({status})"

    def _csrf(self, path: str) -> str:
        with self.opener.open(self.http + path, timeout=10) as response:
            page = response.read().decode()
        return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)

    def post(self, path: str, fields: dict[str, Any]) -> tuple[int, str]:
        """POST ``fields`` (a list value: repeated) as the form on ``path`` would; ``(status, page)``
        after redirects."""
        data = urlencode({**fields, "csrfmiddlewaretoken": self._csrf(path)}, doseq=True).encode()
        request = urllib.request.Request(self.http + path, data=data, headers={"Referer": self.http + path})  # noqa: S310
        with self.opener.open(request, timeout=10) as response:
            return response.status, response.read().decode()

    def action(self, changelist: str, action: str, selected: list[Any]) -> str:
        """Run an admin action on the selected rows of ``changelist``; returns the page shown after."""
        status, page = self.post(changelist, {"action": action, "_selected_action": selected, "index": "0"})
        assert status == 200, status
        return page
