"""The browser pages: plain templates whose data all comes over the socket.

The pages need no server-side authentication: the JavaScript client signs in through the pages'
token endpoints (sessions_app/cookies.py: the refresh token in an HttpOnly cookie, the access token
in the tab's memory) and sends the access token as the socket's first frame (see docs/client.md).
A page only tells the script which page it is and, for a session, which session to join.
"""

from django.views.generic import TemplateView


class HomePageView(TemplateView):
    """Sign in, then the list of the user's sessions with a form to create one."""

    template_name = "sessions/home.html"


class SessionPageView(TemplateView):
    """The live page of one session: the shared checklist, presence, invite and save."""

    template_name = "sessions/session.html"


class ServiceWorkerView(TemplateView):
    """The pages' service worker (templates/sessions/sw.js), at the root so that its scope is the
    whole site: a page reloaded while the server is down still opens (docs/client.md)."""

    template_name = "sessions/sw.js"
    content_type = "text/javascript"
