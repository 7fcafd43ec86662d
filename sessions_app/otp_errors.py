"""The refusals of two-factor sign-in (sessions_app/second_factor.py, sessions_app/otp_devices.py),
as DRF exceptions whose body names the code: ``{"detail", "code"}``. A leaf module: the sign-in
views, the devices' services and the admin's login form all raise or catch them."""

from typing import Any

from rest_framework import exceptions, status


class CodedError(exceptions.APIException):
    """An APIException whose body also names its code: ``{"detail", "code"}`` (the pages tell a
    wrong code from a dead ticket by it)."""

    def __init__(self, detail: Any = None, code: Any = None) -> None:
        super().__init__(detail, code)
        self.detail = {"detail": self.detail, "code": code or self.default_code}


class CodeRefused(CodedError, exceptions.AuthenticationFailed):
    """401 ``invalid_code``: the code is wrong, already used, or the user has no such device."""

    default_detail = "The code is wrong or was already used."
    default_code = "invalid_code"


class CodeThrottled(CodedError):
    """429 ``otp_throttled`` with ``Retry-After``: too many wrong codes in a row for this device."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_detail = "Too many wrong codes; wait before trying again."
    default_code = "otp_throttled"

    def __init__(self, retry_after: int) -> None:
        super().__init__()
        self.wait = max(1, retry_after)


class EnrolmentConflict(CodedError):
    """409 ``otp_enrolled``: a confirmed device exists; remove it before enrolling another."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "Two-factor sign-in is already on; remove it first."
    default_code = "otp_enrolled"


class SignInTooOld(CodedError):
    """403 ``sign_in_again``: turning two-factor on needs a sign-in of the last
    ``SESSIONS_OTP_ENROL_SIGN_IN_AGE`` seconds (the access token's ``auth_time``), so a token
    taken from an older sign-in cannot enrol its holder's authenticator and lock the user out."""

    status_code = status.HTTP_403_FORBIDDEN
    default_detail = "Sign in again to turn on two-factor sign-in."
    default_code = "sign_in_again"


class TicketRefused(CodedError, exceptions.AuthenticationFailed):
    """401 ``invalid_ticket``: unknown, used, expired, of another endpoint, or its user's
    password changed since. Sign in again."""

    default_detail = "The sign-in ticket is not valid (expired or already used); sign in again."
    default_code = "invalid_ticket"
