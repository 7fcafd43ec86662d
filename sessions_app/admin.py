"""Back office: sessions with their members inline, read-only change log and revisions, presence;
open connections, which an operator can disconnect; users, whom an operator can sign out everywhere,
with their two-factor devices (removable; django-otp's own device admins are registered too); a
login that asks a user with two-factor on for the code (OTPAdminLoginForm); sign-in links asked
for (read-only).

What is changed here reaches live connections as it does through the socket: saving or deleting a
membership, a title or a session sends the pushes of sessions_app.membership (model signals), once
the change commits.
"""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from . import events, lockout, otp_devices, protocol, selectors, services
from .models import Change, Connection, MagicLink, Membership, Revision, Session


class MembershipInline(admin.TabularInline):
    """Members and roles, editable."""

    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


class ReadOnlyInline(admin.TabularInline):
    """An inline that shows history and never changes it."""

    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class RevisionInline(ReadOnlyInline):
    """Saved revisions, newest first."""

    model = Revision
    fields = ["number", "version", "message", "author", "created_at"]
    readonly_fields = fields


class ChangeInline(ReadOnlyInline):
    """The most recent entries of the change log."""

    model = Change
    fields = ["version", "ops", "restored", "author", "created_at"]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Change]:
        return super().get_queryset(request).order_by("-version")


class PresentFilter(admin.SimpleListFilter):
    """Sessions with someone connected now."""

    title = "present now"
    parameter_name = "present"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Someone present"), ("no", "Nobody present")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Session]) -> QuerySet[Session]:
        live = selectors.live_connections().filter(session__isnull=False).values("session_id")
        if self.value() == "yes":
            return queryset.filter(pk__in=live)
        if self.value() == "no":
            return queryset.exclude(pk__in=live)
        return queryset


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):
    """Sessions: search by title and owner, filter by date and presence, members inline."""

    list_display = ["title", "owner", "version", "updated_at", "present_now"]
    list_filter = [PresentFilter, "updated_at", "created_at"]
    search_fields = ["title", "owner__username"]
    list_select_related = ["owner"]
    autocomplete_fields = ["owner"]
    # The document and its version change only through the protocol (patch), which versions,
    # logs and pushes every change; an edit here would do none of that.
    readonly_fields = ["id", "data", "version", "created_at", "updated_at", "present_now"]
    fields = ["id", "title", "owner", "data", "version", "created_at", "updated_at", "present_now"]
    inlines = [MembershipInline, RevisionInline, ChangeInline]

    @admin.display(description="present now")
    def present_now(self, obj: Session) -> str:
        """Usernames with a live connection joined to the session."""
        names = selectors.live_connections().filter(session=obj).values_list("user__username", flat=True).distinct()
        return ", ".join(sorted(names)) or "-"


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    """Open sockets, for support: who is connected, where, since when; "disconnect" closes them.

    No delete: deleting a row would leave its socket open and its user present. A disconnect goes
    to the socket itself, on whichever process holds it (``channel_layer.send`` to its channel
    name); the socket then removes its row and tells its session, as at any close. Staff who may
    delete connections may disconnect them.
    """

    list_display = ["user", "session", "server", "opened_at"]
    list_select_related = ["user", "session", "server"]
    search_fields = ["user__username", "session__title"]
    actions = ["disconnect"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_disconnect_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.delete_{self.opts.model_name}")

    @admin.action(description="Disconnect the selected connections", permissions=["disconnect"])
    def disconnect(self, request: HttpRequest, queryset: QuerySet[Connection]) -> None:
        """Close each selected socket (``not_authenticated``, reason ``disconnected``, 4401)."""
        channels = list(queryset.values_list("channel_name", flat=True))
        events.emit([events.socket_close(channel, protocol.DISCONNECTED) for channel in channels])
        self.message_user(request, f"Disconnected {len(channels)} connection(s).", messages.SUCCESS)


class DeviceInline(admin.TabularInline):
    """A user's two-factor devices (django-otp), read-only and removable: never the key or the
    codes (django-otp's own admin pages, ``OTP_ADMIN_HIDE_SENSITIVE_DATA``, hide them too).
    Removing a confirmed TOTP device ends the user's sign-ins (sessions_app/otp_devices.py)."""

    extra = 0
    fields = ("name", "confirmed", "created_at", "last_used_at", "throttling_failure_count")
    readonly_fields = fields
    can_delete = True
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # enrolment is the user's, with a code from the device


class TOTPDeviceInline(DeviceInline):
    model = TOTPDevice
    verbose_name = "two-factor device (TOTP)"


class RecoveryCodesInline(DeviceInline):
    model = StaticDevice
    verbose_name = "recovery codes"


@admin.register(MagicLink)
class MagicLinkAdmin(admin.ModelAdmin):
    """Sign-in links asked for (sessions_app/magiclinks.py), read-only: who, from where, when, and
    whether and from where each was used. A row without a user was asked for a username or email
    that matches no account (the text itself is not kept). No secret is stored to show."""

    list_display = ["created_at", "user", "address", "used_at", "used_address"]
    list_filter = ["created_at", "used_at"]
    list_select_related = ["user"]
    search_fields = ["user__username", "address"]
    fields = ["id", "user", "address", "created_at", "used_at", "used_address"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class SessionsUserAdmin(UserAdmin):
    """Django's user admin, with "disconnect everywhere" (see services.user_sign_out) and the
    user's two-factor devices (removable)."""

    actions = ["disconnect_everywhere"]
    inlines = (*UserAdmin.inlines, TOTPDeviceInline, RecoveryCodesInline)

    @admin.action(description="Disconnect everywhere and sign out", permissions=["change"])
    def disconnect_everywhere(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        """Revoke the users' refresh tokens and close all their sockets, on every process."""
        user_ids = list(queryset.values_list("pk", flat=True))
        revoked = services.user_sign_out(user_ids=user_ids)
        text = f"Disconnected {len(user_ids)} user(s) everywhere and revoked {revoked} sign-in(s)."
        self.message_user(request, text, messages.SUCCESS)


# Replace Django's own user admin only (a project with its own keeps it; it can add the action).
User = get_user_model()
if admin.site.is_registered(User) and type(admin.site.get_model_admin(User)) is UserAdmin:
    admin.site.unregister(User)
    admin.site.register(User, SessionsUserAdmin)


class OTPAdminLoginForm(AdminAuthenticationForm):
    """The admin login: the password (Django's form, django-axes first), then, for a user with
    two-factor sign-in on, a code of the authenticator app or a recovery code, checked as the
    token API checks it (sessions_app/otp_devices.py: both throttles, the sign-in log). A user
    without a device signs in with the password alone, as before. The form shows the code field
    once the password was right (``ask_code``)."""

    otp_token = forms.CharField(
        required=False,
        max_length=32,
        strip=True,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "autocapitalize": "none", "spellcheck": "false"}
        ),
    )

    @property
    def ask_code(self) -> bool:
        user = self.get_user()
        return user is not None and otp_devices.has_second_factor(user)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        user = self.get_user()
        if user is None or not otp_devices.has_second_factor(user):
            return cleaned
        code = cleaned.get("otp_token") or ""
        if not code:
            raise ValidationError(
                "Two-factor sign-in is on: enter the code of your authenticator app.", code="otp_required"
            )
        try:
            otp_devices.verify(self.request, user, code, purpose="admin")
        except (otp_devices.CodeRefused, otp_devices.CodeThrottled, lockout.LockedOut) as exc:
            self.user_cache = user  # keep asking for the code
            detail = exc.detail.get("detail") if isinstance(exc.detail, dict) else exc.detail
            raise ValidationError(str(detail), code="otp_refused") from None
        return cleaned


admin.site.login_form = OTPAdminLoginForm
admin.site.login_template = "sessions/admin_login.html"
