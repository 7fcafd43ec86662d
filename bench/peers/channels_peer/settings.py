"""Minimal Django settings for the plain Channels peer (bench/peers/channels_peer).

Environment: DJANGO_SECRET_KEY (also the JWT signing key, as SimpleJWT's default),
BENCH_SQLITE_PATH (the benchmark database, migrated by the harness).
"""

import os

SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "channels",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["BENCH_SQLITE_PATH"],
    }
}
# The tutorial's consumers talk to each other through a channel layer; a consumer of a process with
# a layer configured also listens on its own channel, so the peer pays for that like our server.
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
ASGI_APPLICATION = "channels_peer.asgi.application"
ROOT_URLCONF = "channels_peer.urls"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
