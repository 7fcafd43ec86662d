"""A user's second factor on django-otp: one TOTP device (RFC 6238) and one set of recovery codes
(a StaticDevice with ``SESSIONS_OTP_RECOVERY_CODES`` StaticTokens); checking a code, with both
throttles; enrolment, removal and new recovery codes.

Rows per user are bounded: at most one TOTPDevice (pending or confirmed: starting an enrolment
replaces a pending one, and is refused while a confirmed one exists) and one StaticDevice with
``SESSIONS_OTP_RECOVERY_CODES`` tokens (regeneration replaces them).

**Checking a code** (``verify``): a code of 6 digits is tried on the TOTP device, anything else
on the recovery codes. django-otp does the checks: ``TOTPDevice.verify_token`` accepts the code
of the current 30-second step or the one on either side (``tolerance`` 1) and only for a step
later than the last one accepted (``last_t``), so a code is good once; ``StaticDevice.verify_token``
deletes the recovery code it accepts. The device row is locked (``select_for_update``) while it is
checked, so two requests cannot both spend one code. Two throttles, both counted in the database
(shared by every process):

- **Per device** (django-otp's ``ThrottlingMixin``): after n wrong codes in a row the device
  refuses every code, right or wrong, for ``OTP_TOTP_THROTTLE_FACTOR * 2**(n-1)`` seconds
  (``OTP_STATIC_THROTTLE_FACTOR`` for recovery codes); a right code resets it. Answered 429
  ``otp_throttled`` with ``Retry-After``.
- **Per account and per address** (django-axes, as the password, sessions_app/lockout.py): a wrong
  code is a failed sign-in for the username and the address (Django's ``user_login_failed``), so
  ``SESSIONS_LOGIN_FAILURE_LIMIT`` wrong codes or passwords lock both out for
  ``SESSIONS_LOGIN_LOCKOUT`` (429 ``locked_out``), the password step included.

**What a change ends**: confirming an enrolment and removing the device (by the user, or by an
operator in the admin: the ``post_delete`` signal) change what the user must present, so every
sign-in of the user ends at once: their refresh tokens are blacklisted and their sockets closed
(``not_authenticated``, reason ``logged_out``, 4401) on every process; each signs in again under
the new rule (services.user_sign_out). Access tokens already issued pass until they expire
(``JWT_ACCESS_LIFETIME``). New recovery codes end nothing (the rule is the same; the old codes die).
A device an operator adds in django-otp's admin ends nothing either (enrolment is the user's).
"""

import dataclasses
import datetime
import enum
import io
import re
from base64 import b32encode
from typing import Any

import segno
from django.contrib.auth.signals import user_login_failed
from django.db import transaction
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from . import lockout, protocol, services
from .conf import app_settings
from .otp_errors import CodeRefused, CodeThrottled, EnrolmentConflict
from .signin_log import signin_event

DEVICE_NAME = "Authenticator app"
RECOVERY_NAME = "Recovery codes"
TOTP_CODE = re.compile(r"\d{6}")
RECOVERY_MAX = 16  # StaticToken.token's max_length


class Outcome(enum.Enum):
    """What a code did: accepted by the TOTP device or as a recovery code, refused, or not tried
    because the device is throttled."""

    TOTP = "totp"
    RECOVERY = "recovery"
    REFUSED = "refused"
    THROTTLED = "throttled"


@dataclasses.dataclass(frozen=True)
class Check:
    """The result of ``check_code``: the outcome and, when throttled, the seconds left."""

    outcome: Outcome
    retry_after: int = 0

    @property
    def ok(self) -> bool:
        return self.outcome in (Outcome.TOTP, Outcome.RECOVERY)


def normalise(code: str) -> str:
    """The code without spaces and dashes, lower case (recovery codes are shown as ``abcd-efgh``)."""
    return re.sub(r"[\s-]", "", code).lower()


def has_second_factor(user: Any) -> bool:
    """True when the user has a confirmed TOTP device: their sign-ins then need a code."""
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def _throttled(device: Any) -> Check | None:
    allowed, info = device.verify_is_allowed()
    if allowed:
        return None
    until = (info or {}).get("locked_until")
    left = (until - timezone.now()).total_seconds() if isinstance(until, datetime.datetime) else 1
    return Check(Outcome.THROTTLED, int(left) + 1)


def check_code(user: Any, code: str, *, confirmed: bool = True) -> Check:
    """Try ``code`` on the user's TOTP device (``confirmed``: the enrolled one, else the pending
    one) or, for a confirmed device and a code that is not 6 digits, on their recovery codes.

    Must run inside ``transaction.atomic``: the device row stays locked until it commits.
    django-otp counts the device's throttling and ``last_t`` in the row (module docstring).
    """
    code = normalise(code)
    if TOTP_CODE.fullmatch(code):
        device = TOTPDevice.objects.select_for_update().filter(user=user, confirmed=confirmed).first()
        outcome = Outcome.TOTP
    elif confirmed and 0 < len(code) <= RECOVERY_MAX:
        device = StaticDevice.objects.select_for_update().filter(user=user, confirmed=True).first()
        outcome = Outcome.RECOVERY
    else:
        return Check(Outcome.REFUSED)
    if device is None:
        return Check(Outcome.REFUSED)
    throttled = _throttled(device)
    if throttled is not None:
        return throttled
    return Check(outcome) if device.verify_token(code) else Check(Outcome.REFUSED)


def refuse_if_locked_out(request: Any, user: Any) -> None:
    """Raise lockout.LockedOut (429) when django-axes has locked out this username or address."""
    from axes.handlers.proxy import AxesProxyHandler  # needs the app registry

    # The DRF request, as the password's authenticate gets it: axes marks that object, so its
    # middleware leaves the JSON 429 alone (it rewrites the answer of a marked HttpRequest).
    if AxesProxyHandler.is_locked(request, {"username": user.get_username()}):
        signin_event("otp_locked_out", request=request, user_id=user.pk)
        raise lockout.LockedOut()


def settle(request: Any, user: Any, check: Check, *, purpose: str) -> None:
    """After ``check_code`` committed: log the outcome, count a wrong code with django-axes, and
    raise CodeRefused (401) or CodeThrottled (429) unless the code was accepted."""
    if check.outcome is Outcome.THROTTLED:
        signin_event("otp_throttled", request=request, user_id=user.pk, purpose=purpose)
        raise CodeThrottled(check.retry_after)
    if check.outcome is Outcome.REFUSED:
        signin_event("otp_refused", request=request, user_id=user.pk, purpose=purpose)
        user_login_failed.send(sender=__name__, credentials={"username": user.get_username()}, request=request)
        if lockout.locked_out(request):  # this failure reached the limit, as a wrong password's does
            raise lockout.LockedOut()
        raise CodeRefused()
    event = "recovery_code_used" if check.outcome is Outcome.RECOVERY else "otp_ok"
    signin_event(event, request=request, user_id=user.pk, purpose=purpose)


def verify(request: Any, user: Any, code: str, *, purpose: str, confirmed: bool = True) -> Check:
    """``check_code`` with both throttles (module docstring); returns the accepted Check, raises
    LockedOut, CodeThrottled or CodeRefused."""
    refuse_if_locked_out(request, user)
    with transaction.atomic():
        check = check_code(user, code, confirmed=confirmed)
    settle(request, user, check, purpose=purpose)
    return check


def status_for(user: Any) -> dict[str, Any]:
    """``{"enrolled", "pending", "recovery_codes_left"}`` for the user's two-factor panel."""
    device = TOTPDevice.objects.filter(user=user).only("confirmed").first()
    left = StaticToken.objects.filter(device__user=user, device__confirmed=True).count()
    return {
        "enrolled": bool(device and device.confirmed),
        "pending": bool(device and not device.confirmed),
        "recovery_codes_left": left,
    }


def qr_svg(text: str) -> str:
    """``text`` as a QR code, an SVG document (segno; error correction M, 4 px modules)."""
    out = io.BytesIO()
    segno.make(text, error="m").save(out, kind="svg", scale=4, xmldecl=False, svgns=True, title="QR code")
    return out.getvalue().decode()


@transaction.atomic
def enrolment_start(*, request: Any, user: Any) -> dict[str, str]:
    """A new pending TOTP device (a pending one before is replaced): ``{"otpauth_uri", "secret",
    "qr_svg"}``, the only time its key is shown. Raises EnrolmentConflict (409) when the user has
    a confirmed device."""
    if TOTPDevice.objects.select_for_update().filter(user=user, confirmed=True).exists():
        raise EnrolmentConflict()
    TOTPDevice.objects.filter(user=user, confirmed=False).delete()
    device = TOTPDevice.objects.create(user=user, name=DEVICE_NAME, confirmed=False)
    signin_event("otp_enrolment_started", request=request, user_id=user.pk)
    uri = device.config_url
    return {"otpauth_uri": uri, "secret": b32encode(device.bin_key).decode().rstrip("="), "qr_svg": qr_svg(uri)}


def _new_recovery_codes(user: Any) -> list[str]:
    StaticDevice.objects.filter(user=user).delete()
    device = StaticDevice.objects.create(user=user, name=RECOVERY_NAME, confirmed=True)
    codes = [StaticToken.random_token() for _ in range(app_settings.OTP_RECOVERY_CODES)]
    StaticToken.objects.bulk_create([StaticToken(device=device, token=code) for code in codes])
    return codes


def enrolment_confirm(*, request: Any, user: Any, code: str) -> dict[str, list[str]]:
    """Confirm the pending device with a code from it; make the recovery codes and end every
    sign-in of the user (module docstring). ``{"recovery_codes"}``, shown this once."""
    refuse_if_locked_out(request, user)
    with transaction.atomic():
        check = check_code(user, code, confirmed=False)
        codes: list[str] = []
        if check.ok:
            TOTPDevice.objects.filter(user=user, confirmed=False).update(confirmed=True)
            codes = _new_recovery_codes(user)
            services.user_sign_out(user_ids=[user.pk], reason=protocol.LOGGED_OUT)
    settle(request, user, check, purpose="enrol")
    signin_event("otp_enrolled", request=request, user_id=user.pk)
    return {"recovery_codes": codes}


def remove(*, request: Any, user: Any, code: str) -> None:
    """Remove the TOTP device and the recovery codes, given a fresh code (TOTP or recovery). The
    ``post_delete`` signal ends every sign-in of the user."""
    verify(request, user, code, purpose="remove")
    with transaction.atomic():
        for device in TOTPDevice.objects.filter(user=user):
            device.delete()
        StaticDevice.objects.filter(user=user).delete()
    signin_event("otp_removed", request=request, user_id=user.pk)


def recovery_regenerate(*, request: Any, user: Any, code: str) -> dict[str, list[str]]:
    """New recovery codes (the old ones die), given a fresh code; refused (401) without a
    confirmed device. ``{"recovery_codes"}``, shown this once."""
    verify(request, user, code, purpose="recovery_codes")
    with transaction.atomic():
        codes = _new_recovery_codes(user)
    signin_event("recovery_codes_regenerated", request=request, user_id=user.pk)
    return {"recovery_codes": codes}


def device_removed(sender: type, instance: Any, **kwargs: Any) -> None:
    """``post_delete`` of a TOTPDevice (the user's removal, the admin, a shell): a confirmed one
    ends every sign-in of its user once the deletion commits."""
    if instance.confirmed:
        services.user_sign_out(user_ids=[instance.user_id], reason=protocol.LOGGED_OUT)
