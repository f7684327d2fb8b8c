"""Django settings of the test suite.

The database comes from ``PGQ_DJANGO_TEST_DATABASE`` (a libpq conninfo) when a
subprocess runs ``python -m django`` against a database a test made; in the
pytest process tests/django/conftest.py points it at the session's server.
"""

from __future__ import annotations

import os

import django
from psycopg.conninfo import conninfo_to_dict


def _database() -> dict[str, object]:
    conninfo = os.environ.get("PGQ_DJANGO_TEST_DATABASE", "")
    params = {k: str(v) for k, v in conninfo_to_dict(conninfo).items()} if conninfo else {}
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": params.pop("dbname", "pgq_django"),
        "USER": params.pop("user", ""),
        "PASSWORD": params.pop("password", ""),
        "HOST": params.pop("host", ""),
        "PORT": params.pop("port", ""),
        # The throwaway server's role is named "pgq": without this, "$user" on the
        # default search_path would put Django's tables in schema pgq (check W002).
        "OPTIONS": {"options": "-c search_path=public", **params},
    }


SECRET_KEY = "pgq-tests-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ROOT_URLCONF = "tests.django.urls"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",  # the admin's CSS and JS for the browser test
    "pgq_django",
    "tests.django.testapp",
    "tests.django.discovered",
]
if django.VERSION < (6, 0):
    INSTALLED_APPS.append("django_tasks")  # the django.tasks backport

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

STATIC_URL = "static/"

DATABASES = {"default": _database()}

TASKS = {
    "default": {
        "BACKEND": "pgq_django.backend.PgqBackend",
        "QUEUES": ["default", "emails", "reports"],
    }
}

PGQ = {
    "DEFAULT_QUEUE": "default",
    "WORKER": {"POLL_INTERVAL": 1.0, "HEARTBEAT_INTERVAL": 1.0, "LEASE_SECONDS": 5.0},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"pgq": {"handlers": ["console"], "level": "INFO"}},
}
