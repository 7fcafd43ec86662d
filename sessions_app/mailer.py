"""Mail sent in the background: one thread, a bounded queue, and a timeout on every connection.

A sign-in link must not wait for the mail server: under ASGI a sync view holds one of daphne's
request threads while it runs, and an SMTP server that answers slowly would hold them all. So the
view only queues the message (``send_later``); a single thread sends the queue with Django's email
framework (``django.core.mail``: ``EMAIL_BACKEND`` and the ``EMAIL_*`` settings), each SMTP
connection bounded by ``EMAIL_TIMEOUT`` seconds. At most ``SESSIONS_MAGIC_LINK_MAIL_QUEUE``
messages wait or are being sent; past that a message is dropped and logged (the person asks for a
new link), so a flood of requests cannot make the process hold unbounded mail.

The body is never logged: it carries the link.
"""

import logging
import smtplib
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait

from django.core.mail import EmailMessage

from .conf import app_settings

logger = logging.getLogger(__name__)

THREAD_NAME_PREFIX = "mail"

_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=THREAD_NAME_PREFIX)
_lock = threading.Lock()
_pending: set[Future[None]] = set()


def _send(message: EmailMessage, deliver: bool) -> None:
    """Called in the mail thread: render ``message`` and, when ``deliver``, send it; a failure is
    logged (recipient count, error class and text; never the body) and the message dropped."""
    try:
        if not deliver:
            message.message().as_bytes()  # the rendering a backend does, for a decoy
            return
        message.send(fail_silently=False)
    except (OSError, smtplib.SMTPException) as error:  # OSError: refused, timed out, TLS errors
        logger.error("mail not sent (%d recipient(s)): %s: %s", len(message.to), type(error).__name__, error)


def _done(future: Future[None]) -> None:
    with _lock:
        _pending.discard(future)


def send_later(*, subject: str, body: str, to: str, deliver: bool = True) -> bool:
    """Queue a plain-text message to ``to`` (from ``DEFAULT_FROM_EMAIL``); returns at once.

    ``deliver=False``: a decoy, rendered in the mail thread like a real message and never sent
    (the same work whether or not a sign-in link's account exists; it takes a place in the queue
    too, so a full queue tells nothing either).

    True when queued; False when ``SESSIONS_MAGIC_LINK_MAIL_QUEUE`` messages are already waiting
    or being sent (the message is dropped, and logged without its body).
    """
    message = EmailMessage(subject=subject, body=body, to=[to])
    with _lock:
        if len(_pending) >= app_settings.MAGIC_LINK_MAIL_QUEUE:
            logger.warning("mail queue full (%d messages): a message was dropped", len(_pending))
            return False
        future = _pool.submit(_send, message, deliver)
        _pending.add(future)
    future.add_done_callback(_done)
    return True


def wait_sent(timeout: float = 10.0) -> bool:
    """Wait up to ``timeout`` seconds for the queued messages to be sent (or to fail); True when
    none is left. For tests and for a clean stop."""
    with _lock:
        pending = set(_pending)
    _, not_done = wait(pending, timeout=timeout)
    return not not_done
