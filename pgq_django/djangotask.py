"""The Task that ``pgq_django``'s ``@task`` builds: pgq's, with Django's time
zones and Celery's ``apply_async`` so a Celery project can switch by changing
an import."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from pgq import Job, Task
from pgq.exceptions import InvalidOptions
from pgq.tasks import P, R

# Celery options with no pgq meaning; named in the error so nobody wonders.
_CELERY_HINTS = {
    "expires": "cancel the job instead (Job.cancel(), manage.py pgq_cancel)",
    "retry": "retries are the task's max_attempts",
    "task_id": "pgq assigns job ids",
    "serializer": "arguments are always JSON",
}


class DjangoTask(Task[P, R]):
    """A pgq Task registered through ``pgq_django``.

    A naive ``run_after`` / ``eta`` datetime is read in Django's current time
    zone (``django.utils.timezone.make_aware``), as the ORM reads naive values.
    """

    def using(self, **options: Any) -> DjangoTask[P, R]:
        run_after = options.get("run_after")
        if isinstance(run_after, datetime) and timezone.is_naive(run_after):
            options["run_after"] = timezone.make_aware(run_after)
        copy = super().using(**options)
        assert isinstance(copy, DjangoTask)
        return copy

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        countdown: float | timedelta | None = None,
        eta: datetime | None = None,
        priority: int | None = None,
        queue: str | None = None,
        **celery_options: Any,
    ) -> Job:
        """Queue a run the way Celery's ``apply_async`` does; returns the Job.

        ``countdown`` (seconds) or ``eta`` (a datetime) delay it; ``priority``
        (higher runs first) and ``queue`` override the task's. Celery options
        pgq has no use for are refused by name rather than ignored.
        """
        if celery_options:
            raise InvalidOptions(_unsupported(celery_options))
        if args is not None and (isinstance(args, (str, bytes)) or not isinstance(args, Sequence)):
            raise InvalidOptions(f"apply_async(args=...) must be a list or tuple, got {args!r}")
        if kwargs is not None and not isinstance(kwargs, Mapping):
            raise InvalidOptions(f"apply_async(kwargs=...) must be a dict, got {kwargs!r}")
        if countdown is not None and eta is not None:
            raise InvalidOptions("apply_async() takes countdown or eta, not both")
        options: dict[str, Any] = {}
        if countdown is not None or eta is not None:
            options["run_after"] = eta if eta is not None else countdown
        if priority is not None:
            options["priority"] = priority
        if queue is not None:
            options["queue"] = queue
        task = self.using(**options) if options else self
        return task.delay(*(args or ()), **(kwargs or {}))


def _unsupported(options: Mapping[str, Any]) -> str:
    parts = []
    for name in sorted(options):
        hint = _CELERY_HINTS.get(name)
        parts.append(f"{name} ({hint})" if hint else name)
    return f"apply_async() does not support Celery's option(s): {', '.join(parts)}"
