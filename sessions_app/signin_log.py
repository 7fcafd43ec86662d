"""Sign-in events, logged on ``sessions_app.signin`` without secrets (issue 14, item 4).

One line per event: ``signin <event> user=<id or -> address=<REMOTE_ADDR> [method=...]``. Never
the password, a code, a device key, a ticket or a token; a refused password names no user (the
username typed may be a password typed in the wrong field). The address is ``REMOTE_ADDR``: behind
a proxy, run daphne with ``--proxy-headers`` (README, "Operations").

Events (level): ``password_ok`` (``magic_ok`` for a magic link; with ``otp=required`` when a code
must follow), ``magic_requested``, ``magic_claimed`` (with ``link=<row id>``), ``otp_required``,
``otp_ok``, ``recovery_code_used``,
``otp_enrolment_started``, ``otp_enrolled``, ``otp_removed``, ``recovery_codes_regenerated`` (INFO);
``password_refused``, ``password_locked_out``, ``magic_refused`` (with ``reason=``: throttled,
throttled_account, link_invalid, link_expired, link_used, other_browser), ``otp_refused``,
``otp_throttled``, ``otp_locked_out``, ``ticket_refused`` (WARNING).
"""

import logging
from typing import Any

logger = logging.getLogger("sessions_app.signin")

REFUSALS = frozenset(
    {
        "password_refused",
        "password_locked_out",
        "magic_refused",
        "otp_refused",
        "otp_throttled",
        "otp_locked_out",
        "ticket_refused",
    }
)


def client_address(request: Any) -> str:
    """The client's address as the server sees it (``REMOTE_ADDR``), or ``-``."""
    if request is None:
        return "-"
    meta = getattr(request, "META", None) or {}
    return str(meta.get("REMOTE_ADDR") or "-")


def signin_event(
    event: str, *, request: Any = None, user_id: Any = None, address: str | None = None, **fields: str
) -> None:
    """Log one sign-in event; ``fields`` are short, non-secret words (``method="password"``).
    ``address`` stands for ``request``'s when the caller has only the address."""
    extra = "".join(f" {key}={value}" for key, value in sorted(fields.items()))
    level = logging.WARNING if event in REFUSALS else logging.INFO
    logger.log(
        level,
        "signin %s user=%s address=%s%s",
        event,
        "-" if user_id is None else user_id,
        address or client_address(request),
        extra,
    )
