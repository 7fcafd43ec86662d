"""ASGI entry point: HTTP through Django, WebSocket through the origin policy and the router.

The routers are Channels' own, in the tail-call form of sessions_app.routing (no router frame
stays on a connection's stack).

Run with ``python -m daphne project.asgi:application`` (or any ASGI server).
"""

import os
import sys

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
# Django must be set up before importing anything that touches models.
django_asgi_app = get_asgi_application()

from sessions_app.conf import app_settings  # noqa: E402
from sessions_app.routing import ProtocolTypeRouter, URLRouter, websocket_urlpatterns  # noqa: E402
from sessions_app.security import origin_validator  # noqa: E402

# See GIL_SWITCH_INTERVAL in sessions_app/conf.py: the database thread gets the GIL back sooner.
sys.setswitchinterval(app_settings.GIL_SWITCH_INTERVAL)

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": origin_validator(URLRouter(websocket_urlpatterns)),
    }
)
