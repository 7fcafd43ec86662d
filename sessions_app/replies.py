"""Schemas of the built-in states' replies and of the server's pushes (docs/protocol.md, section 4).

Documentation only: the server never validates what it sends against them. They feed the
generated AsyncAPI document (sessions_app/asyncapi.py), where a state's ``reply`` and a push's
``payload`` become JSON Schema through drf-spectacular, as the request serializers do
(sessions_app/serializers.py). The states pass these to ``@state(..., reply=...)`` where they
register (handlers.py, history_states.py); the pushes are declared here with ``push_state``.
``tests/test_contract_replies.py`` checks real replies and pushes against them.
"""

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from .models import Role
from .registry import push_state
from .serializers import PATCH_OPERATION

ROLES = [role.value for role in Role]

EMPTY: dict[str, Any] = {"type": "object", "maxProperties": 0, "description": "An empty object."}


@extend_schema_field({"type": "array", "items": PATCH_OPERATION})
class OpsField(serializers.ListField):
    """RFC 6902 operations (``PATCH_OPERATION``)."""


@extend_schema_field({"type": "object", "additionalProperties": {}, "description": "A session's document."})
class DocumentField(serializers.DictField):
    """A session's document: any JSON object."""


class UserSerializer(serializers.Serializer):
    """A user: ``{"id", "username"}``."""

    id = serializers.IntegerField()
    username = serializers.CharField()


class MemberSerializer(UserSerializer):
    """A member of a session: a user with a role."""

    role = serializers.ChoiceField(choices=ROLES)


class SnapshotSerializer(serializers.Serializer):
    """A session snapshot: the ``create`` reply, and ``join``'s without ``since``."""

    id = serializers.UUIDField()
    title = serializers.CharField()
    version = serializers.IntegerField(min_value=0)
    data = DocumentField()
    role = serializers.ChoiceField(choices=ROLES)
    members = MemberSerializer(many=True)
    present = UserSerializer(many=True)


class ChangeSerializer(serializers.Serializer):
    """One accepted patch of the change log, as ``join`` with ``since`` replays it."""

    version = serializers.IntegerField(min_value=1)
    ops = OpsField()
    by = UserSerializer(allow_null=True, help_text="Null when the author's account was deleted.")
    at = serializers.DateTimeField()


class CatchUpSerializer(serializers.Serializer):
    """``join``'s reply with ``since`` when every change after it is still kept."""

    id = serializers.UUIDField()
    version = serializers.IntegerField(min_value=0)
    changes = ChangeSerializer(many=True)


class SessionSummarySerializer(serializers.Serializer):
    """A row of ``list``."""

    id = serializers.UUIDField()
    title = serializers.CharField()
    role = serializers.ChoiceField(choices=ROLES)
    version = serializers.IntegerField(min_value=0)
    updated_at = serializers.DateTimeField()


class OpSummarySerializer(serializers.Serializer):
    """An operation as the history summarises it: strings cut to 100 characters."""

    op = serializers.CharField()
    path = serializers.CharField()
    # ``from`` is a Python keyword: declared below.
    value = serializers.CharField(required=False, help_text="The value's JSON text, cut to 40 characters.")


OpSummarySerializer._declared_fields["from"] = serializers.CharField(required=False)


class RevisionSummarySerializer(serializers.Serializer):
    """A saved revision in the history: ``size`` is bytes of its document's JSON."""

    number = serializers.IntegerField(min_value=1)
    version = serializers.IntegerField(min_value=0)
    message = serializers.CharField(allow_blank=True)
    size = serializers.IntegerField(min_value=0)
    by = UserSerializer(allow_null=True, help_text="Null when the author's account was deleted.")
    at = serializers.DateTimeField()


class ChangeSummarySerializer(serializers.Serializer):
    """A kept change in the history: its first operations summarised, ``op_count`` in all."""

    version = serializers.IntegerField(min_value=1)
    by = UserSerializer(allow_null=True)
    at = serializers.DateTimeField()
    op_count = serializers.IntegerField(min_value=1)
    ops = OpSummarySerializer(many=True)
    restored = serializers.IntegerField(required=False, help_text="The revision this change restored.")


class HistoryPageSerializer(serializers.Serializer):
    """The ``revisions`` reply: newest first; ``more_*``: older ones remain."""

    session = serializers.UUIDField()
    version = serializers.IntegerField(min_value=0)
    revisions = RevisionSummarySerializer(many=True)
    more_revisions = serializers.BooleanField()
    changes = ChangeSummarySerializer(many=True)
    more_changes = serializers.BooleanField()


class RevisionViewSerializer(RevisionSummarySerializer):
    """The ``revision`` reply: one revision with its document."""

    session = serializers.UUIDField()
    data = DocumentField()


# --- replies of the built-in states -------------------------------------------------------------


class PingReply(serializers.Serializer):
    server_time = serializers.DateTimeField()


class TokenExpiryReply(serializers.Serializer):
    token_expires_at = serializers.DateTimeField()


class ListReply(serializers.Serializer):
    sessions = SessionSummarySerializer(many=True)


class VersionReply(serializers.Serializer):
    version = serializers.IntegerField(min_value=1, help_text="The session's new version.")


class PatchReply(serializers.Serializer):
    """``patch``'s reply (docs/protocol.md, section 7, "Rebase")."""

    version = serializers.IntegerField(
        min_value=1, help_text="The session's new version (the change's, for a duplicate)."
    )
    rebased = serializers.BooleanField(
        required=False, help_text="Present (true) when the patch was made on an older version and rebased."
    )
    duplicate = serializers.BooleanField(
        required=False, help_text="Present (true) when a change of this user with the patch's key was applied already."
    )
    ops = OpsField(required=False, help_text="The operations as applied: with rebased or duplicate.")


class PresentReply(serializers.Serializer):
    present = UserSerializer(many=True)


class MembersReply(serializers.Serializer):
    members = MemberSerializer(many=True)


class UsersReply(serializers.Serializer):
    users = UserSerializer(many=True)


class RenameReply(serializers.Serializer):
    id = serializers.UUIDField()
    title = serializers.CharField()


class DeleteReply(serializers.Serializer):
    id = serializers.UUIDField()


class SaveReply(serializers.Serializer):
    revision = serializers.IntegerField(min_value=1)
    version = serializers.IntegerField(min_value=0)


class RestoreReply(serializers.Serializer):
    version = serializers.IntegerField(min_value=0)
    revision = serializers.IntegerField(min_value=1)
    ops = OpsField(help_text="The operations the change applied; none when the document already was that.")


class InitialisedSerializer(serializers.Serializer):
    """The handshake's answer, ``initialised``."""

    user = UserSerializer()
    protocol = serializers.ChoiceField(choices=[1])
    token_expires_at = serializers.DateTimeField()


# --- pushes -------------------------------------------------------------------------------------


class PatchedPush(serializers.Serializer):
    session = serializers.UUIDField()
    version = serializers.IntegerField(min_value=1)
    ops = OpsField()
    by = UserSerializer()
    restored = serializers.IntegerField(required=False, help_text="The revision the change restored (``restore``).")


class PresencePush(serializers.Serializer):
    session = serializers.UUIDField()
    present = UserSerializer(many=True)
    joined = UserSerializer(required=False)
    left = UserSerializer(required=False)


class SavedPush(serializers.Serializer):
    session = serializers.UUIDField()
    revision = serializers.IntegerField(min_value=1)
    version = serializers.IntegerField(min_value=0)
    by = UserSerializer()


class MembersPush(serializers.Serializer):
    session = serializers.UUIDField()
    members = MemberSerializer(many=True)


class SessionAddedPush(SessionSummarySerializer):
    """A ``list`` row with the session's id under ``session``, and who added the member."""

    id = None  # DRF: a subclass drops an inherited field by setting it to None
    session = serializers.UUIDField()
    by = UserSerializer(allow_null=True, help_text="The owner who made the change through the socket, else null.")


class RoleChangedPush(serializers.Serializer):
    session = serializers.UUIDField()
    role = serializers.ChoiceField(choices=ROLES)
    by = UserSerializer(allow_null=True)


class SessionRemovedPush(serializers.Serializer):
    session = serializers.UUIDField()
    reason = serializers.ChoiceField(choices=["removed", "deleted"])
    by = UserSerializer(allow_null=True)


class SessionRenamedPush(serializers.Serializer):
    session = serializers.UUIDField()
    title = serializers.CharField()
    by = UserSerializer(allow_null=True)


_SESSION = "the session's other joined connections, on every server process, after commit"
_USER = "every open connection of the user (joined to that session, another or none), after commit"
push_state("patched", payload=PatchedPush, audience=_SESSION, description="A patch (or a restore) was accepted.")
push_state("presence", payload=PresencePush, audience=_SESSION, description="A user arrived or left.")
push_state("saved", payload=SavedPush, audience=_SESSION, description="A revision was saved.")
push_state("members", payload=MembersPush, audience=_SESSION, description="The member list changed.")
push_state(
    "token_expiring",
    payload=TokenExpiryReply,
    audience="that connection only",
    description="The connection's access token expires soon: send `authenticate` with a new one.",
)
push_state("session_added", payload=SessionAddedPush, audience=_USER, description="The user became a member.")
push_state("role_changed", payload=RoleChangedPush, audience=_USER, description="The user's role changed.")
push_state(
    "session_removed",
    payload=SessionRemovedPush,
    audience=_USER,
    description="The membership ended or the session was deleted; a joined connection has left it.",
)
push_state("session_renamed", payload=SessionRenamedPush, audience=_USER, description="The title changed.")
