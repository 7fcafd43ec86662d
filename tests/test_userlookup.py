"""sessions_app.userlookup against SimpleJWT's own ``get_user`` (tokens.JWTAuthentication): for every
token, the same user or the same refusal (exception class and code), read from the real database."""

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken
from rest_framework_simplejwt.tokens import AccessToken

from sessions_app import tokens, userlookup
from sessions_app.presence import user_check
from sessions_app.protocol import ProtocolError

pytestmark = pytest.mark.django_db


def outcome(check: Any, token: AccessToken) -> Any:
    """What ``check(token)`` gives: ``("user", id, username)`` or ``(exception class, detail)``."""
    try:
        user = check(token)
    except (InvalidToken, AuthenticationFailed) as exc:
        return type(exc).__name__, exc.detail
    if isinstance(user, dict):
        return "user", user["id"], user["username"]
    return "user", user.pk, user.get_username()


def simplejwt(token: AccessToken) -> Any:
    return tokens.JWTAuthentication().get_user(token)


def same_as_simplejwt(token: AccessToken) -> Any:
    mine, theirs = outcome(userlookup.user_summary, token), outcome(simplejwt, token)
    assert mine == theirs
    return mine


@pytest.fixture
def carol() -> Any:
    user = get_user_model().objects.create_user("carol", password="carol-Pw-2718")
    return user


def test_a_valid_token_gives_the_user(carol: Any) -> None:
    assert same_as_simplejwt(AccessToken.for_user(carol)) == ("user", carol.pk, "carol")


@pytest.mark.parametrize("claim", [lambda pk: str(pk), lambda pk: pk])
def test_the_user_id_claim_as_a_string_or_a_number(carol: Any, claim: Any) -> None:
    token = AccessToken.for_user(carol)
    token["user_id"] = claim(carol.pk)
    found = same_as_simplejwt(token)
    assert found == ("user", carol.pk, "carol")
    assert type(found[1]) is int


def test_an_unknown_user(carol: Any) -> None:
    token = AccessToken.for_user(carol)
    token["user_id"] = carol.pk + 1000
    assert same_as_simplejwt(token)[1]["code"] == "user_not_found"


def test_a_deleted_user(carol: Any) -> None:
    token = AccessToken.for_user(carol)
    carol.delete()
    assert same_as_simplejwt(token)[1]["code"] == "user_not_found"


def test_an_inactive_user(carol: Any) -> None:
    token = AccessToken.for_user(carol)
    carol.is_active = False
    carol.save()
    assert same_as_simplejwt(token)[1]["code"] == "user_inactive"


def test_a_token_made_before_a_password_change(carol: Any) -> None:
    token = AccessToken.for_user(carol)
    carol.set_password("carol-new-Pw-1414")
    carol.save()
    assert same_as_simplejwt(token)[1]["code"] == "password_changed"


def test_a_token_without_the_password_claim_is_checked_as_simplejwt_checks_any(carol: Any) -> None:
    token = AccessToken.for_user(carol)
    del token["hash_password"]
    carol.set_password("carol-new-Pw-1414")
    carol.save()
    assert same_as_simplejwt(token) == ("user", carol.pk, "carol")


def test_a_token_without_a_user_id(carol: Any) -> None:
    token = AccessToken.for_user(carol)
    del token["user_id"]
    assert same_as_simplejwt(token)[0] == "InvalidToken"


def test_a_user_id_that_is_not_a_number_is_an_unknown_user_not_a_server_error(carol: Any) -> None:
    token = AccessToken.for_user(carol)
    token["user_id"] = "not-a-number"
    with pytest.raises(AuthenticationFailed) as caught:
        userlookup.user_summary(token)
    assert caught.value.detail["code"] == "user_not_found"
    with pytest.raises(ProtocolError) as refused:
        user_check(token=token)
    assert refused.value.code == "not_authenticated"


def test_every_refusal_is_not_authenticated_on_the_socket(carol: Any) -> None:
    token = AccessToken.for_user(carol)
    carol.is_active = False
    carol.save()
    with pytest.raises(ProtocolError) as refused:
        user_check(token=token)
    assert refused.value.code == "not_authenticated"


def test_the_statement_reads_the_user_model_of_the_project() -> None:
    prepared = userlookup._statement("default")
    assert prepared is not None
    sql, field = prepared
    assert field.name == "id"
    assert "auth_user" in sql
