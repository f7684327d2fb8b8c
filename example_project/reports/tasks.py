"""The site's background work. ``manage.py pgq_worker`` finds this module by
itself (every installed app's ``tasks.py``)."""

from __future__ import annotations

from statistics import fmean

from django.db.models import F
from django.utils import timezone

from pgq_django import task

from .models import Report


@task
def make_report(report_id: int) -> dict[str, float]:
    """Summarise a report's numbers; the summary is also the job's result."""
    report = Report.objects.get(pk=report_id)
    numbers = report.parsed_numbers()
    summary = {
        "count": len(numbers),
        "sum": sum(numbers),
        "mean": fmean(numbers),
        "min": min(numbers),
        "max": max(numbers),
    }
    Report.objects.filter(pk=report_id).update(summary=summary)
    return summary


@task(max_attempts=2, retry_backoff=1.0)
def publish_report(report_id: int) -> str:
    """Publish a report to the (pretend) reports service.

    The service is down for the first two tries of every report, so this job
    fails after its two attempts: find it under "Failed jobs" in the admin and
    retry it; the next try succeeds.
    """
    Report.objects.filter(pk=report_id).update(publish_tries=F("publish_tries") + 1)
    tries = Report.objects.values_list("publish_tries", flat=True).get(pk=report_id)
    if tries <= 2:
        raise ConnectionError(
            f"the reports service is unavailable (try {tries} of report {report_id})"
        )
    Report.objects.filter(pk=report_id).update(published_at=timezone.now())
    return f"report {report_id} published after {tries} tries"
