"""Minimal Django settings for the plain Channels peer (bench/peers/channels_peer).

Environment: DJANGO_SECRET_KEY (also the JWT signing key, as SimpleJWT's default),
BENCH_SQLITE_PATH (the benchmark database, migrated by the harness), REDIS_URL and
CHANNEL_LAYER_BACKEND (the fan-out: channels_redis' core or pub/sub layer with its defaults).
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
# With REDIS_URL (the fan-out), the layer the tutorial configures: channels_redis, stock options.
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": os.environ.get("CHANNEL_LAYER_BACKEND", "channels_redis.core.RedisChannelLayer"),
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
ASGI_APPLICATION = "channels_peer.asgi.application"
ROOT_URLCONF = "channels_peer.urls"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
