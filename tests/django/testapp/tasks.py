"""The test project's tasks: pgq_django @task functions and Django's own
(django.tasks, or the django-tasks backport on Django 5.2)."""

from __future__ import annotations

import asyncio
from typing import Any

from django.db import connection

from pgq_django import task

from .models import Note

try:
    from django.tasks import task as django_task
except ImportError:  # Django 5.2: the backport
    from django_tasks import task as django_task


@task
def add(a: int, b: int) -> int:
    return a + b


@task(queue="emails", priority=5, max_attempts=2, timeout=30)
def send_email(address: str, subject: str = "hello") -> str:
    return f"sent {subject!r} to {address}"


@task
def create_note(text: str) -> int:
    """Writes with the ORM from inside a worker."""
    return Note.objects.create(text=text).pk


@task
def backend_pid() -> int:
    """The PostgreSQL backend serving this job's ORM queries."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


@task(max_attempts=1)
def fail(message: str) -> None:
    raise ValueError(message)


@task
def takes_user(user_id: int) -> int:
    return user_id


class TaskBoom(Exception):
    """Raised by a Django task, to check the error's class path."""


@django_task
def dj_add(a: int, b: int) -> int:
    return a + b


@django_task(queue_name="reports", priority=7)
def dj_report(name: str) -> dict[str, Any]:
    return {"report": name}


@django_task
def dj_boom(message: str) -> None:
    raise TaskBoom(message)


@django_task(takes_context=True)
def dj_context(context: Any, value: int) -> dict[str, Any]:
    return {"attempt": context.attempt, "id": context.task_result.id, "value": value}


@django_task
async def dj_async_double(value: int) -> int:
    await asyncio.sleep(0)
    return value * 2
