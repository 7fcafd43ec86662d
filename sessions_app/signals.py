"""Model signals: what a saved or deleted user, membership or session means for live connections.

- A user deactivated, deleted, or given a new password (``set_password`` then ``save``): their
  sockets end on every process (4401) once the change commits.
- A membership created, changed or deleted, a session renamed or deleted: the pushes of
  sessions_app.membership, whoever made the change (the socket's services, the admin, a shell).

``QuerySet.update()`` and SQL send no signal: a user deactivated that way is found by each
process's heartbeat (sessions_app.process); the other changes are not pushed.
"""

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models.signals import post_delete, post_save, pre_delete, pre_save
from django.dispatch import receiver
from django_otp.plugins.otp_totp.models import TOTPDevice

from . import events, membership, otp_devices, protocol
from .models import Membership, Session

User = get_user_model()


@receiver(post_save, sender=User, dispatch_uid="sessions_app.user_saved")
def user_saved(sender: type, instance: Any, created: bool, **kwargs: Any) -> None:
    """Called after a user is saved: when inactive, or when the save stores a new password, end
    their sockets once the change commits."""
    if created:
        return
    if not instance.is_active:
        events.emit([events.user_disconnect(instance.pk, protocol.DEACTIVATED)])
    elif getattr(instance, "_password", None) is not None:
        # AbstractBaseUser.set_password keeps the raw password in ``_password`` until save() has
        # sent this signal (it then calls the validators' ``password_changed``). A hash upgrade at
        # sign-in (check_password's setter) clears it first: the same password, not a change.
        events.emit([events.user_disconnect(instance.pk, protocol.PASSWORD_CHANGED)])


@receiver(post_delete, sender=User, dispatch_uid="sessions_app.user_deleted")
def user_deleted(sender: type, instance: Any, **kwargs: Any) -> None:
    """Called after a user is deleted: end their sockets once the deletion commits."""
    events.emit([events.user_disconnect(instance.pk, protocol.DEACTIVATED)])


@receiver(pre_save, sender=Membership, dispatch_uid="sessions_app.membership_saving")
def membership_saving(sender: type, instance: Membership, **kwargs: Any) -> None:
    """Called before a membership is saved: remember the role it had."""
    if not instance._state.adding:
        previous = Membership.objects.filter(pk=instance.pk).values_list("role", flat=True).first()
        instance._sessions_previous_role = previous  # type: ignore[attr-defined]


@receiver(post_save, sender=Membership, dispatch_uid="sessions_app.membership_saved")
def membership_saved(sender: type, instance: Membership, created: bool, **kwargs: Any) -> None:
    """Called after a membership is saved: the user's new session, or new role."""
    previous = getattr(instance, "_sessions_previous_role", None)
    membership.membership_saved(instance, created=created, previous_role=previous)


@receiver(post_delete, sender=Membership, dispatch_uid="sessions_app.membership_deleted")
def membership_deleted(sender: type, instance: Membership, origin: Any = None, **kwargs: Any) -> None:
    """Called after a membership is deleted: the user is removed from the session."""
    membership.membership_deleted(instance, origin=origin)


@receiver(pre_save, sender=Session, dispatch_uid="sessions_app.session_saving")
def session_saving(sender: type, instance: Session, update_fields: Any = None, **kwargs: Any) -> None:
    """Called before a session is saved: remember the title it had, when the save may change it."""
    if not instance._state.adding and (update_fields is None or "title" in update_fields):
        previous = Session.objects.filter(pk=instance.pk).values_list("title", flat=True).first()
        instance._sessions_previous_title = previous  # type: ignore[attr-defined]


@receiver(post_save, sender=Session, dispatch_uid="sessions_app.session_saved")
def session_saved(sender: type, instance: Session, **kwargs: Any) -> None:
    """Called after a session is saved: a new title is pushed to its members."""
    membership.session_saved(instance, previous_title=getattr(instance, "_sessions_previous_title", None))


@receiver(pre_delete, sender=Session, dispatch_uid="sessions_app.session_deleting")
def session_deleting(sender: type, instance: Session, origin: Any = None, **kwargs: Any) -> None:
    """Called before a session is deleted (its memberships go first): note who to tell."""
    membership.session_deleting(instance, origin=origin)


@receiver(post_delete, sender=Session, dispatch_uid="sessions_app.session_deleted")
def session_deleted(sender: type, instance: Session, **kwargs: Any) -> None:
    """Called after a session is deleted: its members are told, and leave it."""
    membership.session_deleted(instance)


@receiver(post_delete, sender=TOTPDevice, dispatch_uid="sessions_app.totp_device_deleted")
def totp_device_deleted(sender: type, instance: Any, **kwargs: Any) -> None:
    """Called after a TOTP device is deleted (the user's removal, the admin): a confirmed one ends
    every sign-in of its user (sessions_app/otp_devices.py, "What a change ends")."""
    otp_devices.device_removed(sender, instance, **kwargs)
