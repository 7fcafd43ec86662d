"""Disconnect a user's sockets on every process when the account is deactivated or deleted, or
its password changes (``set_password`` then ``save``), once the change commits."""

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from . import events, protocol

User = get_user_model()


@receiver(post_save, sender=User, dispatch_uid="sessions_app.user_saved")
def user_saved(sender: type, instance: Any, created: bool, **kwargs: Any) -> None:
    """Called after a user is saved: when inactive, or when the save stores a new password, end
    their sockets once the change commits."""
    if created:
        return
    if not instance.is_active:
        events.publish_on_commit([events.user_disconnect(instance.pk, protocol.DEACTIVATED)])
    elif getattr(instance, "_password", None) is not None:
        # AbstractBaseUser.set_password keeps the raw password in ``_password`` until save() has
        # sent this signal (it then calls the validators' ``password_changed``). A hash upgrade at
        # sign-in (check_password's setter) clears it first: the same password, not a change.
        events.publish_on_commit([events.user_disconnect(instance.pk, protocol.PASSWORD_CHANGED)])


@receiver(post_delete, sender=User, dispatch_uid="sessions_app.user_deleted")
def user_deleted(sender: type, instance: Any, **kwargs: Any) -> None:
    """Called after a user is deleted: end their sockets once the deletion commits."""
    events.publish_on_commit([events.user_disconnect(instance.pk, protocol.DEACTIVATED)])
