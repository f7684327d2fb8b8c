"""What the admin's actions and buttons do: call pgq, then tell the user.

Retry and cancel go through the core API (``app.retry`` / ``app.cancel``),
whose SQL decides which jobs may move, so a job that changed state since the
page was drawn is skipped, never forced. Each call reports how many jobs it
changed, how many it skipped and why, and records the change in the admin's
history of each job it moved.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from django.contrib import messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from pgq.jobs import FINISHED_STATUSES, JobStatus

from .conf import get_settings
from .models import Job
from .registry import app

RETRYABLE = frozenset({JobStatus.FAILED.value, JobStatus.CANCELLED.value})
CANCELLABLE = frozenset({JobStatus.QUEUED.value, JobStatus.RUNNING.value})
FINISHED = frozenset(status.value for status in FINISHED_STATUSES)


def retry(modeladmin: Any, request: HttpRequest, ids: list[int]) -> list[int]:
    """Queue failed or cancelled jobs again; returns the ids that moved."""
    moved = app.retry(*ids)
    _log(request, moved, _("Retried."))
    if moved:
        count = len(moved)
        modeladmin.message_user(
            request,
            ngettext("%(count)d job queued again.", "%(count)d jobs queued again.", count)
            % {"count": count},
            messages.SUCCESS,
        )
    skipped = sorted(set(ids) - set(moved))
    if skipped:
        modeladmin.message_user(
            request,
            ngettext(
                "%(count)d job skipped: only failed or cancelled jobs can be retried "
                "(%(statuses)s).",
                "%(count)d jobs skipped: only failed or cancelled jobs can be retried "
                "(%(statuses)s).",
                len(skipped),
            )
            % {"count": len(skipped), "statuses": describe_statuses(skipped)},
            messages.WARNING,
        )
    return moved


def cancel(modeladmin: Any, request: HttpRequest, ids: list[int]) -> dict[int, str]:
    """Cancel queued jobs, ask running ones to stop; returns {id: status after}."""
    outcome = app.cancel(*ids)
    cancelled = [job_id for job_id, status in outcome.items() if status == JobStatus.CANCELLED]
    asked = [job_id for job_id, status in outcome.items() if status == JobStatus.RUNNING]
    _log(request, cancelled, _("Cancelled."))
    _log(request, asked, _("Asked to stop."))
    if cancelled:
        modeladmin.message_user(
            request,
            ngettext("%(count)d job cancelled.", "%(count)d jobs cancelled.", len(cancelled))
            % {"count": len(cancelled)},
            messages.SUCCESS,
        )
    if asked:
        modeladmin.message_user(
            request,
            ngettext(
                "%(count)d running job asked to stop: it is interrupted and ends as "
                "cancelled, or as usual if it finishes first.",
                "%(count)d running jobs asked to stop: they are interrupted and end as "
                "cancelled, or as usual if they finish first.",
                len(asked),
            )
            % {"count": len(asked)},
            messages.INFO,
        )
    skipped = sorted(set(ids) - set(outcome))
    if skipped:
        modeladmin.message_user(
            request,
            ngettext(
                "%(count)d job skipped: it had already finished (%(statuses)s).",
                "%(count)d jobs skipped: they had already finished (%(statuses)s).",
                len(skipped),
            )
            % {"count": len(skipped), "statuses": describe_statuses(skipped)},
            messages.WARNING,
        )
    return outcome


def finished_only(
    modeladmin: Any, request: HttpRequest, queryset: QuerySet[Job]
) -> QuerySet[Job] | None:
    """The finished jobs of a selection to delete, after saying which are left
    out; None (and a message) when none is finished."""
    left_out = queryset.exclude(status__in=FINISHED).count()
    if left_out:
        modeladmin.message_user(
            request,
            ngettext(
                "%(count)d queued or running job left out: only finished jobs are deleted "
                "(cancel it first).",
                "%(count)d queued or running jobs left out: only finished jobs are deleted "
                "(cancel them first).",
                left_out,
            )
            % {"count": left_out},
            messages.WARNING,
        )
    finished = queryset.filter(status__in=FINISHED)
    if not finished.exists():
        modeladmin.message_user(request, _("No job deleted."), messages.WARNING)
        return None
    return finished


def delete_finished(ids: Iterable[int]) -> int:
    """Delete those of these jobs that are finished; returns how many.

    The rows are locked first, so a job retried meanwhile (and perhaps
    running) is never deleted: a worker's claim skips locked rows, and a
    retry waits for this transaction.
    """
    with transaction.atomic(using=get_settings().database):
        finished = Job.objects.select_for_update().filter(pk__in=list(ids), status__in=FINISHED)
        locked = list(finished.values_list("pk", flat=True))
        deleted, _counts = Job.objects.filter(pk__in=locked).delete()
    return deleted


def describe_statuses(ids: list[int]) -> str:
    """'2 queued, 1 running' for these jobs; jobs gone meanwhile are counted as such."""
    counts = Counter(Job.objects.filter(pk__in=ids).values_list("status", flat=True))
    parts = [f"{counts[s.value]} {s.value}" for s in JobStatus if counts[s.value]]
    gone = len(ids) - sum(counts.values())
    if gone:
        parts.append(_("%(count)d deleted") % {"count": gone})
    return ", ".join(parts)


def _log(request: HttpRequest, ids: list[int], message: str) -> None:
    """An entry in each job's admin history."""
    if ids and request.user.pk is not None:
        LogEntry.objects.log_actions(
            user_id=request.user.pk,
            queryset=Job.objects.filter(pk__in=ids),
            action_flag=CHANGE,
            change_message=message,
        )
