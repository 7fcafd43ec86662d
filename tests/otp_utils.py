"""Helpers of the two-factor tests: a pinned clock for django-otp's TOTP check, codes computed from
a device's key (django_otp.oath, RFC 6238), and the sign-in calls."""

import types
from base64 import b32decode
from typing import Any

import pytest
from django_otp.oath import TOTP
from rest_framework.test import APIClient

PASSWORD = "correct-horse-battery-staple"
ORIGIN = "http://testserver"
NOW = 1_800_000_015.0  # a pinned time, mid-step (30-second steps)


@pytest.fixture
def pinned_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """django-otp's TOTPDevice.verify_token reads ``time.time()``: pinned to NOW, so that which
    step a code belongs to never depends on how fast the test runs."""
    import django_otp.plugins.otp_totp.models as totp_models

    monkeypatch.setattr(totp_models, "time", types.SimpleNamespace(time=lambda: NOW))


def code_for(key: bytes, step_offset: int = 0) -> str:
    """The 6-digit code of ``key`` (bytes: a device's ``bin_key``, or ``secret_key`` of the shown
    secret) for the 30-second step ``step_offset`` steps from NOW's."""
    totp = TOTP(key, step=30, t0=0, digits=6, drift=0)
    totp.time = NOW + 30 * step_offset
    return f"{totp.token():06d}"


def secret_key(secret: str) -> bytes:
    """The key of the base32 secret an enrolment shows (RFC 4648, padding dropped)."""
    return b32decode(secret + "=" * (-len(secret) % 8))


def page() -> APIClient:
    """A browser on this site's own page (the cookie endpoints' SameOriginOnly)."""
    return APIClient(headers={"Origin": ORIGIN, "Sec-Fetch-Site": "same-origin"})


def password_sign_in(username: str, *, cookie: bool = False, client: APIClient | None = None, **extra: Any) -> Any:
    url = "/api/v1/token/cookie/" if cookie else "/api/v1/token/"
    client = client or (page() if cookie else APIClient())
    return client.post(url, {"username": username, "password": PASSWORD}, format="json", **extra)


def code_sign_in(ticket: str, code: str, *, cookie: bool = False, client: APIClient | None = None, **extra: Any) -> Any:
    url = "/api/v1/token/cookie/otp/" if cookie else "/api/v1/login/otp/"
    client = client or (page() if cookie else APIClient())
    return client.post(url, {"ticket": ticket, "code": code}, format="json", **extra)


def bearer(access: str) -> APIClient:
    return APIClient(headers={"Authorization": f"Bearer {access}"})
