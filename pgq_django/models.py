"""Read-only ORM views of pgq's tables, for the admin and for queries such as
``Job.objects.filter(status="failed")``.

The tables belong to pgq (``migrations/*.sql``): the models are unmanaged,
their field names are the column names, and rows change only through pgq's
API (``.delay()``, ``Job.retry()``, ``Job.cancel()``), never through ``save()``.
Deleting finished jobs is allowed. Queries go to ``PGQ["DATABASE"]``.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.utils.translation import gettext_lazy as _

from pgq import JobStatus

from .conf import get_settings

# The choices come from pgq.JobStatus, itself kept equal to the SQL enum by a test.
Status = models.TextChoices(  # type: ignore[misc]
    "Status", [(status.name, (status.value, _(status.value.capitalize()))) for status in JobStatus]
)

_READ_ONLY = (
    "pgq rows are read-only through the ORM: queue jobs with a task's .delay(), "
    "change them with Job.retry() / Job.cancel() (or manage.py pgq_retry / pgq_cancel)"
)


class PgqQuerySet(models.QuerySet):  # type: ignore[type-arg]
    """Reads and deletes; writes go through pgq."""

    def update(self, **kwargs: Any) -> int:
        raise TypeError(_READ_ONLY)

    def bulk_create(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(_READ_ONLY)

    def bulk_update(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(_READ_ONLY)


class JobQuerySet(PgqQuerySet):
    def failed(self) -> JobQuerySet:
        return self.filter(status=Status.FAILED)

    def retry(self) -> list[int]:
        """Queue these failed or cancelled jobs again; returns the ids that moved."""
        from .registry import app

        return app.retry(*self.values_list("id", flat=True))

    def cancel(self) -> dict[int, str]:
        """Cancel these jobs (running ones are asked to stop); returns {id: status}."""
        from .registry import app

        return app.cancel(*self.values_list("id", flat=True))


class PgqManager(models.Manager):  # type: ignore[type-arg]
    """Queries run on the database that holds the pgq schema."""

    def get_queryset(self) -> models.QuerySet:  # type: ignore[type-arg]
        return super().get_queryset().using(get_settings().database)


class TextArrayField(models.Field):  # type: ignore[type-arg]
    """A ``text[]`` column, read as a list (psycopg decodes it).

    Not ``ArrayField``: that one requires ``django.contrib.postgres`` in
    INSTALLED_APPS from Django 6 on, a setting pgq has no reason to impose.
    """

    description = _("List of text")

    def db_type(self, connection: Any) -> str:
        return "text[]"


class ReadOnlyModel(models.Model):
    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(_READ_ONLY)


class Job(ReadOnlyModel):
    """A row of ``pgq.jobs``."""

    Status = Status

    id = models.BigAutoField(primary_key=True)
    queue = models.CharField(_("queue"), max_length=100)
    task = models.CharField(_("task"), max_length=200)
    args = models.JSONField(_("positional arguments"), default=list)
    kwargs = models.JSONField(_("keyword arguments"), default=dict)
    priority = models.IntegerField(_("priority"), default=0, help_text=_("Higher runs first."))
    status = models.CharField(_("status"), max_length=16, choices=Status.choices)
    attempts = models.IntegerField(_("attempts"), default=0)
    max_attempts = models.IntegerField(_("max attempts"), default=3)
    run_at = models.DateTimeField(_("run at"), help_text=_("Not run before this time."))
    created_at = models.DateTimeField(_("created at"))
    started_at = models.DateTimeField(_("started at"), null=True)
    finished_at = models.DateTimeField(_("finished at"), null=True)
    worker_id = models.UUIDField(_("worker"), null=True)
    last_error = models.TextField(_("last error"), null=True)
    result = models.JSONField(_("result"), null=True)
    unique_key = models.TextField(_("unique key"), null=True)
    cancel_requested = models.BooleanField(_("cancel requested"), default=False)
    progress = models.JSONField(_("progress"), null=True)

    objects = PgqManager.from_queryset(JobQuerySet)()

    class Meta:
        managed = False
        db_table = 'pgq"."jobs'
        ordering = ("-id",)
        verbose_name = _("job")
        verbose_name_plural = _("jobs")
        # Jobs are created by tasks, never through a form: no "add" or "change".
        default_permissions = ("view", "delete")
        permissions = (
            ("retry_job", _("Can retry failed or cancelled jobs")),
            ("cancel_job", _("Can cancel jobs")),
        )

    def __str__(self) -> str:
        return f"job {self.id} {self.task} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return JobStatus(self.status).is_finished

    @property
    def error_message(self) -> str:
        """The first line of the last error (its traceback follows in ``last_error``)."""
        return (self.last_error or "").split("\n", 1)[0]

    def retry(self) -> bool:
        """Queue this failed or cancelled job again; False if it was not retryable."""
        return self.__class__.objects.filter(pk=self.pk).retry() == [self.pk]

    def cancel(self) -> str | None:
        """Cancel this job (a running one is asked to stop); its status after the
        call, or None if it had already finished."""
        return self.__class__.objects.filter(pk=self.pk).cancel().get(self.pk)


class FailedJobManager(PgqManager):
    def get_queryset(self) -> models.QuerySet:  # type: ignore[type-arg]
        return super().get_queryset().filter(status=Status.FAILED)


class FailedJob(Job):
    """The failed jobs: the admin's "Failed jobs" entry, one click from its index.
    It has no permissions of its own; Job's apply."""

    objects = FailedJobManager.from_queryset(JobQuerySet)()

    class Meta:
        proxy = True
        verbose_name = _("failed job")
        verbose_name_plural = _("failed jobs")
        default_permissions = ()


class Worker(ReadOnlyModel):
    """A row of ``pgq.workers``: a worker process and its lease."""

    id = models.UUIDField(primary_key=True)
    hostname = models.TextField(_("hostname"))
    pid = models.IntegerField(_("pid"))
    queues = TextArrayField(_("queues"), null=True)  # NULL: every queue
    tasks = TextArrayField(_("tasks"))
    concurrency = models.IntegerField(_("concurrency"))
    started_at = models.DateTimeField(_("started at"))
    heartbeat_at = models.DateTimeField(_("last heartbeat"))
    expires_at = models.DateTimeField(_("lease expires at"))

    objects = PgqManager.from_queryset(PgqQuerySet)()

    class Meta:
        managed = False
        db_table = 'pgq"."workers'
        ordering = ("started_at",)
        verbose_name = _("worker")
        verbose_name_plural = _("workers")
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"worker {self.hostname} pid={self.pid}"
