"""System checks (``manage.py check``; also run by runserver, migrate and the test runner)."""

from typing import Any

from django.core.checks import Warning, register

from .registry import REGISTRY


@register()
def states_declare_their_reply(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """``sessions.W001`` for each registered state without a ``reply`` schema: its reply is "any
    object" in the generated AsyncAPI document (sessions_app/asyncapi.py) and the clients built
    from it. Declare one with ``@state(name, ..., reply=Serializer or JSON Schema)``."""
    return [
        Warning(
            f"The state {name!r} declares no reply schema.",
            hint="Pass reply= (a DRF serializer, a JSON Schema, or a tuple of them) to @state: "
            "the AsyncAPI document documents its reply as any object.",
            obj=entry.handler,
            id="sessions.W001",
        )
        for name, entry in sorted(REGISTRY.items())
        if entry.reply is None
    ]
