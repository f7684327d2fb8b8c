"""The job queue in Django's admin.

- **Jobs**: every job, filtered by status, queue, task and creation date,
  searched by id, task and arguments, with counts per queue and status on top.
- **Failed jobs**: the same list narrowed to failed jobs, one click from the
  admin index.
- **Workers**: the live worker processes and their leases.

Rows are read-only here: jobs are created by tasks and change only through
pgq (``app.retry()``, ``app.cancel()``). Each action has its own permission:
``pgq_django.retry_job``, ``pgq_django.cancel_job`` and Django's
``pgq_django.delete_job`` (only finished jobs are ever deleted); a staff user
with only ``view_job`` sees everything and can do nothing. The detail page has
"Retry" / "Cancel" buttons (django-object-actions) behind the same
permissions, as CSRF-protected POST requests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib import admin
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.db.models import F, OuterRef, QuerySet, Subquery, TextField, Value
from django.db.models.functions import Cast, Concat
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.timesince import timesince
from django.utils.translation import gettext_lazy as _
from django_object_actions import BaseDjangoObjectActions, action

from pgq import JobStatus
from pgq.jobs import format_progress

from . import admin_actions
from .admin_display import (
    duration,
    json_block,
    status_badge,
    status_counts,
    text_block,
    timestamp,
)
from .models import FailedJob, Job, Worker


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Rows are never added or edited through the admin."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Job)
class JobAdmin(BaseDjangoObjectActions, ReadOnlyAdmin):
    list_display = (
        "id",
        "task",
        "queue",
        "status_badge",
        "attempts_display",
        "age",
        "worker",
        "progress_display",  # a column of the row: no query of its own
    )
    list_display_links = ("id", "task")
    list_filter = ("status", "queue", "task", ("created_at", admin.DateFieldListFilter))
    # id__exact compares the id as text, so any search term is safe for it.
    search_fields = ("id__exact", "task", "args", "kwargs")
    search_help_text = _("A job id, a task name, or text found in the arguments.")
    list_per_page = 50
    show_full_result_count = False  # one count(*) fewer on a big table
    actions = ("retry_jobs", "cancel_jobs", "delete_selected")
    change_actions = ("retry_this", "cancel_this")
    change_list_template = "admin/pgq_django/job/change_list.html"
    change_form_template = "admin/pgq_django/job/change_form.html"
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "task",
                    "queue",
                    "status_badge",
                    "priority",
                    "attempts_display",
                    "worker",
                    "cancel_requested",
                    "unique_key",
                    "progress_display",
                )
            },
        ),
        (_("Arguments"), {"fields": ("args_json", "kwargs_json")}),
        (_("Result"), {"fields": ("result_json",)}),
        (_("Error"), {"fields": ("error_traceback",)}),
        (
            _("Timings"),
            {"fields": ("created", "runs_from", "started", "finished", "waited", "ran_for")},
        ),
    )

    # Permissions: always Job's, also for the FailedJob proxy (which has none).

    def _has_job_permission(self, request: HttpRequest, action_name: str) -> bool:
        codename = get_permission_codename(action_name, Job._meta)
        return bool(request.user.has_perm(f"{Job._meta.app_label}.{codename}"))

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._has_job_permission(request, "view")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and not obj.is_finished:
            return False  # queued or running: cancel it first
        return self._has_job_permission(request, "delete")

    def has_retry_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._has_job_permission(request, "retry")

    def has_cancel_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._has_job_permission(request, "cancel")

    # The list.

    def get_queryset(self, request: HttpRequest) -> QuerySet[Job]:
        worker = Worker.objects.filter(id=OuterRef("worker_id")).annotate(
            name=Concat(
                F("hostname"), Value(" pid "), Cast("pid", TextField()), output_field=TextField()
            )
        )
        return super().get_queryset(request).annotate(worker_name=Subquery(worker.values("name")))

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Sequence[str]:
        return [name for _title, options in self.fieldsets for name in options["fields"]]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        """Without the error section when there is no error, nor the result
        section when there is no result to show."""
        hidden = set()
        if obj is not None and not obj.last_error:
            hidden.add("error_traceback")
        if obj is not None and obj.result is None and obj.status != JobStatus.SUCCEEDED:
            hidden.add("result_json")
        return [fieldset for fieldset in self.fieldsets if not hidden & set(fieldset[1]["fields"])]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {
            **(extra_context or {}),
            "pgq_counts": status_counts(
                reverse("admin:pgq_django_job_changelist", current_app=self.admin_site.name)
            ),
        }
        return super().changelist_view(request, context)  # type: ignore[no-any-return]

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj: Job) -> str:
        return status_badge(obj.status, obj.get_status_display(), obj.cancel_requested)

    @admin.display(description=_("attempts"), ordering="attempts")
    def attempts_display(self, obj: Job) -> str:
        return f"{obj.attempts} / {obj.max_attempts}"

    @admin.display(description=_("age"), ordering="-created_at")
    def age(self, obj: Job) -> str:
        return timesince(obj.created_at, timezone.now())

    @admin.display(description=_("worker"))
    def worker(self, obj: Job) -> str | None:
        if obj.worker_id is None:
            return None
        name = getattr(obj, "worker_name", None)
        return name or format_html("<code>{}</code>", str(obj.worker_id)[:8])

    # The detail page.

    @admin.display(description=_("positional arguments"))
    def args_json(self, obj: Job) -> str:
        return json_block(obj.args)

    @admin.display(description=_("keyword arguments"))
    def kwargs_json(self, obj: Job) -> str:
        return json_block(obj.kwargs)

    @admin.display(description=_("progress"))
    def progress_display(self, obj: Job) -> str:
        return format_progress(obj.progress) or "-"

    @admin.display(description=_("result"))
    def result_json(self, obj: Job) -> str:
        return json_block(obj.result)

    @admin.display(description=_("error and traceback"))
    def error_traceback(self, obj: Job) -> str | None:
        return text_block(obj.last_error) if obj.last_error else None

    @admin.display(description=_("created at"))
    def created(self, obj: Job) -> str:
        return timestamp(obj.created_at)

    @admin.display(description=_("run at (not before)"))
    def runs_from(self, obj: Job) -> str:
        return timestamp(obj.run_at)

    @admin.display(description=_("started at"))
    def started(self, obj: Job) -> str | None:
        return timestamp(obj.started_at) if obj.started_at else None

    @admin.display(description=_("finished at"))
    def finished(self, obj: Job) -> str | None:
        return timestamp(obj.finished_at) if obj.finished_at else None

    @admin.display(description=_("waited"))
    def waited(self, obj: Job) -> str | None:
        """From when it could run to when its last attempt started."""
        if obj.started_at is None:
            return None
        return duration(obj.started_at - min(obj.run_at, obj.started_at))

    @admin.display(description=_("ran for"))
    def ran_for(self, obj: Job) -> str | None:
        if obj.started_at is None or obj.finished_at is None:
            return None
        return duration(obj.finished_at - obj.started_at)

    # Bulk actions (the list's action menu).

    @admin.action(permissions=["retry"], description=_("Retry selected failed or cancelled jobs"))
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        admin_actions.retry(self, request, list(queryset.values_list("pk", flat=True)))

    @admin.action(permissions=["cancel"], description=_("Cancel selected queued or running jobs"))
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        admin_actions.cancel(self, request, list(queryset.values_list("pk", flat=True)))

    @admin.action(permissions=["delete"], description=_("Delete selected finished jobs"))
    def delete_selected(
        self, request: HttpRequest, queryset: QuerySet[Job]
    ) -> TemplateResponse | None:
        """Django's delete (confirmation page, log entries), narrowed to
        finished jobs. It keeps Django's action name, which its confirmation
        page posts back to."""
        finished = admin_actions.finished_only(self, request, queryset)
        if finished is None:
            return None
        return django_delete_selected(self, request, finished)  # type: ignore[no-any-return]

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        admin_actions.delete_finished(list(queryset.values_list("pk", flat=True)))

    def delete_model(self, request: HttpRequest, obj: Job) -> None:
        admin_actions.delete_finished([obj.pk])

    # Per-job buttons on the detail page (POST only, with Django's CSRF check).

    def get_change_actions(self, request: HttpRequest, object_id: str, form_url: str) -> list[str]:
        job = self.get_object(request, object_id)
        if job is None:
            return []
        shown = []
        if job.status in admin_actions.RETRYABLE and self.has_retry_permission(request):
            shown.append("retry_this")
        cancellable = job.status in admin_actions.CANCELLABLE and not job.cancel_requested
        if cancellable and self.has_cancel_permission(request):
            shown.append("cancel_this")
        return shown

    @action(
        label=_("Retry"),
        description=_("Queue this job again, with a fresh attempt budget"),
        methods=("POST",),
        button_type="form",
    )
    def retry_this(self, request: HttpRequest, obj: Job) -> HttpResponse:
        if not self.has_retry_permission(request):
            raise PermissionDenied
        admin_actions.retry(self, request, [obj.pk])
        return self._job_page(obj)

    @action(
        label=_("Cancel"),
        description=_("Cancel this job; a running job is asked to stop"),
        methods=("POST",),
        button_type="form",
    )
    def cancel_this(self, request: HttpRequest, obj: Job) -> HttpResponse:
        if not self.has_cancel_permission(request):
            raise PermissionDenied
        admin_actions.cancel(self, request, [obj.pk])
        return self._job_page(obj)

    def _job_page(self, obj: Job) -> HttpResponse:
        """Job's page: the job may have left the failed list meanwhile."""
        url = reverse(
            "admin:pgq_django_job_change", args=[obj.pk], current_app=self.admin_site.name
        )
        return HttpResponseRedirect(url)


@admin.register(FailedJob)
class FailedJobAdmin(JobAdmin):
    """Failed jobs only: what an operator looks at first."""

    list_display = ("id", "task", "queue", "attempts_display", "failed_ago", "error")
    list_filter = ("queue", "task", ("finished_at", admin.DateFieldListFilter))
    actions = ("retry_jobs", "delete_selected")
    ordering = ("-finished_at", "-id")

    @admin.display(description=_("failed"), ordering="-finished_at")
    def failed_ago(self, obj: Job) -> str | None:
        if obj.finished_at is None:
            return None
        return _("%(age)s ago") % {"age": timesince(obj.finished_at, timezone.now())}

    @admin.display(description=_("error"))
    def error(self, obj: Job) -> str:
        return Truncator(obj.error_message).chars(100)


@admin.register(Worker)
class WorkerAdmin(ReadOnlyAdmin):
    list_display = (
        "hostname",
        "pid",
        "queue_names",
        "concurrency",
        "started_at",
        "heartbeat_at",
        "alive",
    )
    search_fields = ("hostname",)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a worker's row belongs to the worker

    @admin.display(description=_("queues"))
    def queue_names(self, obj: Worker) -> str:
        return ", ".join(obj.queues) if obj.queues else _("all")

    @admin.display(description=_("lease valid"), boolean=True, ordering="expires_at")
    def alive(self, obj: Worker) -> bool:
        return bool(obj.expires_at > timezone.now())
