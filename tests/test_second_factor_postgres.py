"""Issue 14, item 2 on the real PostgreSQL: one ticket, one code, one sign-in, however many
requests race. The ticket row and the device row are locked (``SELECT ... FOR UPDATE``) while a
code is checked, so concurrent exchanges of one ticket with different good codes (TOTP and
recovery codes), or of different tickets with one TOTP code, give tokens once.

Run in the PostgreSQL pass (``DATABASE_URL=postgres://... pytest -m postgres``).
"""

from typing import Any

import pytest
from django.contrib.auth import get_user_model

from sessions_app import second_factor
from tests.otp_utils import PASSWORD, bearer, code_for, code_sign_in, password_sign_in, pinned_clock, secret_key  # noqa: F401
from tests.test_concurrent_writes import require_postgresql, run_threads  # noqa: F401 - a fixture

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("pinned_clock")]

THREADS = 6


@pytest.fixture(autouse=True)
def fast_hashes_and_no_device_throttle(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    settings.OTP_STATIC_THROTTLE_FACTOR = 0
    settings.SESSIONS_LOGIN_FAILURE_LIMIT = 1000  # the losers' refusals must not lock the account


@pytest.fixture
def enrolled(db: Any) -> dict[str, Any]:
    get_user_model().objects.create_user("dave", password=PASSWORD)
    api = bearer(password_sign_in("dave").json()["access"])
    key = secret_key(api.post("/api/v1/otp/enrol/").json()["secret"])
    recovery = api.post("/api/v1/otp/confirm/", {"code": code_for(key, -1)}, format="json").json()["recovery_codes"]
    return {"key": key, "recovery": recovery}


def test_one_ticket_exchanged_concurrently_with_different_good_codes_signs_in_once(enrolled: Any) -> None:
    ticket = password_sign_in("dave").json()["ticket"]
    codes = [code_for(enrolled["key"], 0), *enrolled["recovery"][: THREADS - 1]]
    statuses: list[int] = []
    run_threads(THREADS, lambda i: statuses.append(code_sign_in(ticket, codes[i]).status_code))
    assert sorted(statuses) == [200] + [401] * (THREADS - 1), statuses


def test_one_totp_code_on_concurrent_tickets_signs_in_once(enrolled: Any) -> None:
    tickets = [second_factor.ticket_issue(get_user_model().objects.get(), method="password", cookie=False)]
    tickets += [password_sign_in("dave").json()["ticket"] for _ in range(second_factor.TICKETS_PER_USER - 2)]
    code = code_for(enrolled["key"], 0)
    statuses: list[int] = []
    run_threads(len(tickets), lambda i: statuses.append(code_sign_in(tickets[i], code).status_code))
    assert sorted(statuses) == [200] + [401] * (len(tickets) - 1), statuses
