"""Issue 13, item 1: TLS terminated by the production layout's nginx (PROD_TLS_CERT, PROD_TLS_KEY)
with the production settings; a layout of its own (tests/prodlayout.py), marked ``prod``."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests import live, wsclient
from tests.adminhttp import Admin
from tests.prodlayout import get, running_layout

pytestmark = pytest.mark.prod


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and its key), valid for a day, made with openssl."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(  # noqa: S603
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",  # noqa: S607
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def test_tls_at_nginx_with_the_production_settings(tmp_path: Path) -> None:
    """PROD_TLS_CERT/PROD_TLS_KEY: nginx terminates TLS and says so in X-Forwarded-Proto, which
    Django trusts with DJANGO_PROXY_SSL_HEADER=1: DJANGO_HTTPS=1 then serves (HSTS, no redirect
    loop), and a wss:// client signs in."""
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(cafile=str(cert))
    settings = {"PROD_TLS_CERT": cert, "PROD_TLS_KEY": key, "DJANGO_HTTPS": 1, "DJANGO_PROXY_SSL_HEADER": 1}
    with running_layout(tmp_path, PROCESSES=1, NGINX_WORKERS=1, **settings) as running:
        base = f"https://127.0.0.1:{running.port}"
        with urllib.request.urlopen(base + "/", timeout=10, context=context) as response:  # noqa: S310
            assert response.status == 200 and response.url == base + "/"
            assert response.headers["Strict-Transport-Security"] == "max-age=31536000"
        request = urllib.request.Request(  # noqa: S310
            base + "/api/v1/token/",
            data=json.dumps({"username": "alice", "password": live.PASSWORD}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10, context=context) as response:  # noqa: S310
            token = json.loads(response.read())["access"]

        async def sign_in() -> dict[str, Any]:
            async with connect(
                f"wss://127.0.0.1:{running.port}{live.SOCKET_PATH}", ssl=context, origin=base, ping_interval=None
            ) as ws:
                client = wsclient.Client(ws)
                await client.send({"token": token})
                return await client.recv()

        assert asyncio.run(sign_in())["state"] == "initialised"
        # The admin's CSRF check (Referer against the Host nginx passes, over https) holds behind
        # the proxy: no CSRF_TRUSTED_ORIGINS needed.
        running.query("UPDATE auth_user SET is_staff = true, is_superuser = true WHERE username = 'alice'")
        admin = Admin(base, "alice", live.PASSWORD, context=context)
        assert any(cookie.name == "sessionid" and cookie.secure for cookie in admin.cookies)
        # Plain HTTP to the TLS port is refused by nginx itself.
        status, _, _ = get(f"http://127.0.0.1:{running.port}/healthz")
        assert status == 400
