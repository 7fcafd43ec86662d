"""Back office: sessions with their members inline, read-only change log and revisions, presence.

What is changed here reaches live connections as it does through the socket: saving or deleting a
membership, a title or a session sends the pushes of sessions_app.membership (model signals), once
the change commits.
"""

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from . import selectors
from .models import Change, Connection, Membership, Revision, Session


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
    fields = ["version", "ops", "author", "created_at"]
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
    """Open sockets, for support: who is connected, where, since when. Read-only."""

    list_display = ["user", "session", "server", "opened_at"]
    list_select_related = ["user", "session", "server"]
    search_fields = ["user__username", "session__title"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
