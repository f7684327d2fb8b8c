"""The project's worker App, as the job processes of ``manage.py pgq_worker
--isolation process`` import it.

A job process is a fresh interpreter that imports ``pgq_django.isolated:app``
(the App's ``import_spec``): importing this module sets Django up from
``DJANGO_SETTINGS_MODULE``, which it inherits from the worker, and finds the
project's tasks as ``manage.py pgq_worker`` does. Settings changed in the
worker's memory only (a test's override_settings) do not reach it.
"""

from __future__ import annotations

import django

django.setup()

from .discovery import discover_tasks  # noqa: E402  (needs the apps set up)
from .worker import worker_app  # noqa: E402

discover_tasks()
app = worker_app()
