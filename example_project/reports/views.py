from __future__ import annotations

from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from .forms import ReportForm
from .models import Report
from .tasks import make_report, publish_report


def index(request: HttpRequest) -> HttpResponse:
    """The form that makes a report, and the latest reports."""
    if request.method == "POST":
        form = ReportForm(request.POST)
        if form.is_valid():
            # The report and its two jobs commit together, or not at all: a
            # worker never sees a job whose report does not exist yet.
            with transaction.atomic():
                report = form.save()
                summary_job = make_report.delay(report.pk)
                publish_report.delay(report.pk)
            messages.success(
                request, f"Report {report.pk} saved; job {summary_job.id} is summarising it."
            )
            return redirect("reports:index")
    else:
        form = ReportForm()
    reports = Report.objects.all()[:20]
    return render(request, "reports/index.html", {"form": form, "reports": reports})
