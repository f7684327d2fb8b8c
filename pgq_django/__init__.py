"""pgq for Django: tasks queued in your PostgreSQL, inside your transactions.

    from pgq_django import task

    @task
    def send_welcome(user_id: int) -> None: ...

    send_welcome.delay(user.pk)   # in transaction.atomic(): commits with your writes

    @periodic("0 9 * * mon-fri")     # a cron schedule, in settings.TIME_ZONE
    @task
    def morning_report() -> None: ...

``manage.py pgq_worker`` runs the tasks of every installed app's ``tasks.py``.
``pgq_django.backend.PgqBackend`` is a backend for Django's own ``django.tasks``.
"""

from __future__ import annotations

from .connection import DjangoApp
from .djangotask import DjangoTask
from .registry import app, periodic, task

__all__ = ["DjangoApp", "DjangoTask", "app", "periodic", "task"]
