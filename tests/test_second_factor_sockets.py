"""Issue 14, item 2: turning two-factor sign-in on or off takes effect at once. Confirming an
enrolment and removing the device end the user's sockets (``logged_out``, 4401) and refresh tokens;
other users' sockets stay (sessions_app/otp_devices.py, "What a change ends")."""

from typing import Any

import pytest
from channels.db import database_sync_to_async
from django_otp.plugins.otp_totp.models import TOTPDevice

from sessions_app import protocol
from sessions_app.tokens import LoginRefreshToken
from tests.otp_utils import bearer, code_for, pinned_clock, secret_key  # noqa: F401 - a fixture
from tests.test_revocation import ended
from tests.utils import connected

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("pinned_clock")]


@database_sync_to_async
def post(user: Any, path: str, body: dict[str, str] | None = None) -> Any:
    # A sign-in's own token (auth_time now): turning two-factor on needs a recent sign-in.
    access = str(LoginRefreshToken.for_user(user).access_token)
    return bearer(access).post(path, body or {}, format="json")


async def test_confirming_an_enrolment_and_removing_the_device_end_the_users_sockets(
    alice: Any, bob: Any, settings: Any
) -> None:
    settings.OTP_TOTP_THROTTLE_FACTOR = 0  # a right code straight after a wrong one (test_second_factor.py)
    async with connected(alice) as mine, connected(bob) as other:
        started = await post(alice, "/api/v1/otp/enrol/")
        key = secret_key(started.json()["secret"])
        assert (await mine.ok("ping"))["server_time"]  # a pending device changes nothing
        assert (await post(alice, "/api/v1/otp/confirm/", {"code": code_for(key, 0)})).status_code == 200
        await ended(mine, protocol.LOGGED_OUT)
        assert (await other.ok("ping"))["server_time"]

    async with connected(alice) as again:
        assert (await post(alice, "/api/v1/otp/remove/", {"code": code_for(key, 0)})).status_code == 401  # used
        assert (await again.ok("ping"))["server_time"]
        assert (await post(alice, "/api/v1/otp/remove/", {"code": code_for(key, 1)})).status_code == 200
        await ended(again, protocol.LOGGED_OUT)
    assert not await TOTPDevice.objects.filter(user=alice).aexists()
