"""Django settings for django-tasks-db's side of the benchmark: its app, the
database backend, and the database from ``$BENCH_DSN`` (a postgresql:// URL)."""

from __future__ import annotations

import os
from urllib.parse import unquote, urlparse

_url = urlparse(os.environ.get("BENCH_DSN", "postgresql:///postgres"))

SECRET_KEY = "bench"
USE_TZ = True
INSTALLED_APPS = ["django_tasks", "django_tasks_db"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(_url.path.lstrip("/")),
        "USER": unquote(_url.username or ""),
        "PASSWORD": unquote(_url.password or ""),
        "HOST": unquote(_url.hostname or ""),
        "PORT": str(_url.port or ""),
    }
}
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
LOGGING_CONFIG = None
