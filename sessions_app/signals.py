"""Disconnect a user's sockets on every process when the account is deactivated or deleted."""

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from . import events

User = get_user_model()


@receiver(post_save, sender=User, dispatch_uid="sessions_app.user_saved")
def user_saved(sender: type, instance: Any, created: bool, **kwargs: Any) -> None:
    """Called after a user is saved: when inactive, close their sockets once the change commits."""
    if not created and not instance.is_active:
        events.publish_on_commit([events.user_deactivated(instance.pk)])


@receiver(post_delete, sender=User, dispatch_uid="sessions_app.user_deleted")
def user_deleted(sender: type, instance: Any, **kwargs: Any) -> None:
    """Called after a user is deleted: close their sockets once the deletion commits."""
    events.publish_on_commit([events.user_deactivated(instance.pk)])
