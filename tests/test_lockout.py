"""Issue 11, item 3: password guessing is throttled, per account and per address, on the token API
and the admin login (django-axes, sessions_app/lockout.py). Correct sign-ins never count.
"""

from datetime import timedelta
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.db.models import F
from django.test import Client
from rest_framework.test import APIClient

from sessions_app.conf import app_settings

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery-staple"
LIMIT = 5  # SESSIONS_LOGIN_FAILURE_LIMIT's default


@pytest.fixture(autouse=True)
def fast_password_hasher(settings: Any) -> None:
    """Full-strength hashing costs ~0.2 s a check; these tests make dozens."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def users(django_user_model: Any) -> None:
    for name in ("dave", "erin"):
        django_user_model.objects.create_user(name, password=PASSWORD)
    django_user_model.objects.create_superuser("root", password=PASSWORD)


def token(username: str, password: str, address: str = "127.0.0.1") -> Any:
    body = {"username": username, "password": password}
    return APIClient().post("/api/v1/token/", body, format="json", REMOTE_ADDR=address)


def admin_login(username: str, password: str, address: str = "127.0.0.1") -> Any:
    return Client().post("/admin/login/", {"username": username, "password": password}, REMOTE_ADDR=address)


def assert_locked_out(response: Any) -> None:
    assert response.status_code == 429, (response.status_code, response.content)
    assert response.json() == {
        "detail": "Too many failed sign-ins for this account or from this address; try again later."
    }
    assert response["Retry-After"] == str(int(app_settings.LOGIN_LOCKOUT))
    assert "access" not in response.json()


def forget_failures(seconds: float) -> None:
    """Make every recorded failure ``seconds`` older (instead of waiting)."""
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(seconds=seconds))


# --- the token API ----------------------------------------------------------------------------------


def test_the_token_api_locks_an_account_out_after_the_limit_of_failures_from_any_addresses(users: None) -> None:
    for n in range(1, LIMIT):
        assert token("dave", "guess", f"10.0.0.{n}").status_code == 401
    assert_locked_out(token("dave", "guess", "10.0.0.99"))  # the limit-th failure
    assert_locked_out(token("dave", PASSWORD, "10.0.1.1"))  # right password, new address: still refused
    assert token("erin", PASSWORD, "10.0.0.99").status_code == 200  # other accounts are not affected


def test_the_token_api_locks_an_address_out_after_the_limit_of_failures_for_any_usernames(users: None) -> None:
    for n in range(1, LIMIT):
        assert token(f"nobody{n}", "guess", "192.0.2.7").status_code == 401
    assert_locked_out(token("erin", "guess", "192.0.2.7"))
    assert_locked_out(token("dave", PASSWORD, "192.0.2.7"))  # every account, from that address
    assert token("dave", PASSWORD, "192.0.2.8").status_code == 200  # the account itself is not locked


def test_correct_sign_ins_never_count_however_many(users: None) -> None:
    for _ in range(LIMIT - 1):
        assert token("dave", "guess").status_code == 401
    for _ in range(4 * LIMIT):
        assert token("dave", PASSWORD).status_code == 200
        assert token("erin", PASSWORD).status_code == 200


def test_a_lockout_ends_its_length_after_the_last_failure_and_attempts_during_it_do_not_extend_it(
    users: None,
) -> None:
    for _ in range(LIMIT):
        token("dave", "guess", "198.51.100.1")
    forget_failures(app_settings.LOGIN_LOCKOUT - 60)
    assert_locked_out(token("dave", "guess", "198.51.100.1"))  # refused without counting
    assert_locked_out(token("dave", PASSWORD, "198.51.100.2"))
    forget_failures(61)  # now LOGIN_LOCKOUT + 1 seconds after the last counted failure
    assert token("dave", PASSWORD, "198.51.100.1").status_code == 200


def test_failures_further_apart_than_the_lockout_never_add_up(users: None) -> None:
    for _ in range(3 * LIMIT):
        assert token("dave", "guess").status_code == 401
        forget_failures(app_settings.LOGIN_LOCKOUT + 1)
    assert token("dave", PASSWORD).status_code == 200


def test_the_limit_and_the_lockout_are_the_apps_settings(users: None, settings: Any) -> None:
    settings.SESSIONS_LOGIN_FAILURE_LIMIT = 2
    settings.SESSIONS_LOGIN_LOCKOUT = 60
    assert token("dave", "guess").status_code == 401
    response = token("dave", "guess")
    assert_locked_out(response)
    assert response["Retry-After"] == "60"


def test_an_inactive_user_counts_as_a_failure_and_is_told_no_active_account(users: None) -> None:
    get_user_model().objects.filter(username="dave").update(is_active=False)
    response = token("dave", PASSWORD)
    assert response.status_code == 401
    assert response.json()["detail"] == "No active account found with the given credentials"
    assert AccessAttempt.objects.get().failures_since_start == 1


# --- the admin login ----------------------------------------------------------------------------------


def test_the_admin_login_locks_an_account_out_after_the_limit_of_failures(users: None) -> None:
    for n in range(1, LIMIT):
        assert admin_login("root", "guess", f"10.1.0.{n}").status_code == 200  # the form again, with an error
    assert admin_login("root", "guess", "10.1.0.99").status_code == 429
    locked = admin_login("root", PASSWORD, "10.1.1.1")
    assert locked.status_code == 429
    assert b"too many login attempts" in locked.content


def test_the_admin_login_locks_an_address_out_after_the_limit_of_failures(users: None) -> None:
    for n in range(1, LIMIT):
        assert admin_login(f"nobody{n}", "guess", "10.2.0.1").status_code == 200
    assert admin_login("dave", "guess", "10.2.0.1").status_code == 429
    assert admin_login("root", PASSWORD, "10.2.0.1").status_code == 429
    assert admin_login("root", PASSWORD, "10.2.0.2").status_code == 302  # signed in: redirected


def test_failures_count_across_the_token_api_and_the_admin(users: None) -> None:
    for _ in range(LIMIT - 1):
        token("root", "guess")
    assert admin_login("root", "guess").status_code == 429
