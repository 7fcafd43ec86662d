"""App configuration: registers the states and the account signals."""

from django.apps import AppConfig


class SessionsAppConfig(AppConfig):
    """Interactive sessions over WebSocket."""

    name = "sessions_app"
    verbose_name = "Interactive sessions"

    def ready(self) -> None:
        """Check the app's settings (ImproperlyConfigured stops start-up, in any project), then
        import the modules that register states, pushes, system checks and signal receivers."""
        from . import checks, handlers, history_states, membership_states, openapi, replies, signals  # noqa: F401
        from .conf import app_settings

        app_settings.reload()
