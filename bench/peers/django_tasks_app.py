"""django-tasks-db's tasks: the same no-ops as pgq's ``bench.tasks``, declared
with Django's task API (``django.tasks`` on Django 6, the ``django_tasks``
backport on 5.2), found by the worker through their dotted path."""

from __future__ import annotations

try:
    from django.tasks import task
except ImportError:
    from django_tasks import task

from bench.starts import record_start


@task()
def noop(n: int) -> None:
    """A sync no-op."""


@task()
def record(n: int) -> None:
    """Notes when it started (the latency scenario)."""
    record_start(n)
