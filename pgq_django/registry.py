"""The project's one pgq App and its ``@task`` decorator."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta, tzinfo
from typing import Any, cast, overload

from django.conf import settings as django_settings

from pgq.retry import Backoff
from pgq.tasks import P, R, UniqueKey

from .conf import get_settings
from .connection import DjangoApp
from .djangotask import DjangoTask

app = DjangoApp()
"""Every ``pgq_django`` task is registered here; ``manage.py pgq_worker`` runs it."""


@overload
def task(func: Callable[P, R], /) -> DjangoTask[P, R]: ...


@overload
def task(
    *,
    name: str | None = None,
    queue: str | None = None,
    priority: int = 0,
    max_attempts: int | None = None,
    timeout: float | None = None,
    retry_backoff: Backoff = 2.0,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
    unique: UniqueKey = False,
) -> Callable[[Callable[P, R]], DjangoTask[P, R]]: ...


def task(func: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Make a function a task: ``@task`` or ``@task(queue="emails", max_attempts=5)``.

    Call ``.delay(*args, **kwargs)`` to queue it (inside ``transaction.atomic()``
    the job commits with your writes), ``.using(run_after=..., priority=...)``
    for per-call options, or Celery's ``.apply_async(args, kwargs, countdown=...)``.
    ``queue`` and ``max_attempts`` default to ``PGQ["DEFAULT_QUEUE"]`` and
    ``PGQ["MAX_ATTEMPTS"]``; the other options are pgq's (see ``pgq.App.task``).
    Arguments must be JSON: pass a model's pk, not the instance.
    """

    def register(function: Callable[..., Any]) -> DjangoTask[Any, Any]:
        settings = get_settings()
        chosen = dict(options)
        if chosen.get("queue") is None:
            chosen["queue"] = settings.default_queue
        if chosen.get("max_attempts") is None:
            chosen["max_attempts"] = settings.max_attempts
        return cast(DjangoTask[Any, Any], app.task(**chosen)(function))

    return register(func) if func is not None else register


def periodic(
    cron: str,
    *,
    timezone: str | tzinfo | None = None,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    name: str | None = None,
    max_delay: float | timedelta | str | None = None,
) -> Callable[[DjangoTask[P, R]], DjangoTask[P, R]]:
    """Enqueue a task on a cron schedule: ``@periodic("0 9 * * mon-fri")`` above
    ``@task``. ``manage.py pgq_worker`` enqueues one job per tick, however many
    workers run.

    ``timezone`` defaults to Django's ``TIME_ZONE``; the other options are
    pgq's (see ``pgq.App.periodic``).
    """
    zone = timezone if timezone is not None else (django_settings.TIME_ZONE or "UTC")
    declare = app.periodic(
        cron, timezone=zone, args=args, kwargs=kwargs, name=name, max_delay=max_delay
    )
    return cast(Callable[[DjangoTask[P, R]], DjangoTask[P, R]], declare)
