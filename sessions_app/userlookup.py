"""The socket's user check in one SQL statement: SimpleJWT's ``JWTAuthentication.get_user`` rules
(as sessions_app.tokens.JWTAuthentication applies them) without building a queryset and a model
instance per handshake.

Through the ORM, ``User.objects.get(pk=...)`` costs ~240 µs of CPU per call (SQLite, this machine's
core) against ~25 µs for the same SELECT prepared once here: about a seventh of a whole handshake
(issue 16). Every check of SimpleJWT's stays, in its order: the user id claim, an unknown user,
``CHECK_USER_IS_ACTIVE``, and ``CHECK_REVOKE_TOKEN`` (the token's ``hash_password`` claim against the
MD5 of the current password hash, ``rest_framework_simplejwt.utils.get_md5_hash_password``; a token
without the claim passes, as tokens.JWTAuthentication lets minted tokens pass). The row is read on
every call (nothing is cached), so a password change, a disabled or a deleted account takes effect
at the next handshake or re-authentication, as before.

Used only when the user model is one this statement reads faithfully: the id, username,
``is_active`` and ``password`` are concrete columns of its table and its default manager is
Django's own (a manager that filters users would be bypassed). Any other model goes through
``tokens.JWTAuthentication().get_user``.
"""

import functools
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db import connections, models, router
from django.utils.translation import gettext_lazy as _
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.utils import get_md5_hash_password

from .tokens import JWTAuthentication


@functools.cache
def _statement(alias: str) -> tuple[str, models.Field] | None:
    """``(SQL, id field)`` selecting ``pk, username, is_active, password`` by ``USER_ID_FIELD`` for
    database ``alias``, or None when the user model is not one it reads faithfully (module docstring)."""
    model = get_user_model()
    meta = model._meta
    if type(model._default_manager).get_queryset is not models.Manager.get_queryset:
        return None
    try:
        fields = [meta.get_field(name) for name in (api_settings.USER_ID_FIELD, model.USERNAME_FIELD, "is_active")]
        fields.append(meta.get_field("password"))
    except FieldDoesNotExist:
        return None
    if not all(getattr(f, "concrete", False) and f.column for f in fields):
        return None
    quote = connections[alias].ops.quote_name
    columns = ", ".join(quote(f.column) for f in (meta.pk, *fields[1:]))
    sql = f"SELECT {columns} FROM {quote(meta.db_table)} WHERE {quote(fields[0].column)} = %s"  # noqa: S608
    return sql, fields[0]


def user_summary(token: Any) -> dict[str, Any]:
    """``{"id", "username"}`` of the validated access token's user, checked as SimpleJWT's
    ``get_user`` checks it (module docstring).

    Raises InvalidToken (no user id claim) or AuthenticationFailed (unknown, inactive, password
    changed), the exceptions ``get_user`` raises.
    """
    model = get_user_model()
    alias = router.db_for_read(model)
    prepared = _statement(alias)
    if prepared is None:
        user = JWTAuthentication().get_user(token)
        return {"id": user.pk, "username": user.get_username()}
    sql, id_field = prepared
    try:
        user_id = token[api_settings.USER_ID_CLAIM]
    except KeyError:
        raise InvalidToken(_("Token contained no recognizable user identification")) from None
    connection = connections[alias]
    try:
        value = id_field.get_db_prep_value(id_field.to_python(user_id), connection)
    except (ValidationError, TypeError, ValueError):
        value = None  # no user has such an id
    row = None
    if value is not None:
        with connection.cursor() as cursor:
            cursor.execute(sql, [value])
            row = cursor.fetchone()
    if row is None:
        raise AuthenticationFailed(_("User not found"), code="user_not_found")
    pk, username, is_active, password = row
    if api_settings.CHECK_USER_IS_ACTIVE and not is_active:
        raise AuthenticationFailed(_("User is inactive"), code="user_inactive")
    claim = api_settings.REVOKE_TOKEN_CLAIM
    if api_settings.CHECK_REVOKE_TOKEN and claim in token and token[claim] != get_md5_hash_password(password):
        raise AuthenticationFailed(_("The user's password has been changed."), code="password_changed")
    return {"id": model._meta.pk.to_python(pk), "username": username}
