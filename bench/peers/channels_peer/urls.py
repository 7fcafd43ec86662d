"""No HTTP views: the peer only serves its WebSocket route."""

urlpatterns: list = []
