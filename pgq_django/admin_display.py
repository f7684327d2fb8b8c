"""How the admin shows jobs: status badges, JSON and tracebacks in ``<pre>``,
durations, and the counts per queue and status above the job list."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.db.models import Count
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _

from pgq import JobStatus

from .models import Job


def status_badge(status: str, label: str, cancel_requested: bool = False) -> SafeString:
    if cancel_requested and status == JobStatus.RUNNING:
        label = _("%(status)s, cancel requested") % {"status": label}
    return format_html('<span class="pgq-status pgq-status-{}">{}</span>', status, label)


def json_block(value: Any) -> SafeString:
    """Pretty-printed JSON, escaped, in a ``<pre>``."""
    text = json.dumps(value, indent=2, ensure_ascii=False)
    return format_html('<pre class="pgq-json">{}</pre>', text)


def text_block(text: str) -> SafeString:
    """Text kept as it is (a traceback), escaped, in a ``<pre>``."""
    return format_html('<pre class="pgq-traceback">{}</pre>', text)


def timestamp(value: datetime) -> str:
    """'2026-01-31 14:05:09.123 UTC' in the current time zone: to the
    millisecond, as job timings need."""
    local = timezone.localtime(value)
    return f"{local:%Y-%m-%d %H:%M:%S}.{local.microsecond // 1000:03d} {local.tzname()}"


def duration(delta: timedelta) -> str:
    """'153 ms', '2.5 s', '3 min 12 s', '2 h 5 min'."""
    seconds = delta.total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


@dataclass(frozen=True)
class Cell:
    status: str
    count: int
    url: str


@dataclass(frozen=True)
class QueueRow:
    queue: str
    url: str
    cells: list[Cell]
    total: int


@dataclass(frozen=True)
class StatusCounts:
    """Jobs per queue (rows) and status (columns), each count a link to the
    job list filtered on it."""

    statuses: list[tuple[str, str]]  # (value, label), in JobStatus order
    rows: list[QueueRow]
    totals: list[Cell]
    total: int

    def count(self, queue: str, status: str) -> int:
        for row in self.rows:
            if row.queue == queue:
                return next(cell.count for cell in row.cells if cell.status == status)
        return 0


def status_counts(changelist_url: str) -> StatusCounts:
    """Counts per queue and status, from one GROUP BY query."""
    grouped = Job.objects.order_by().values_list("queue", "status").annotate(n=Count("pk"))
    by_queue: dict[str, dict[str, int]] = {}
    for queue, status, count in grouped:
        by_queue.setdefault(queue, {})[status] = count

    def url(**filters: str) -> str:
        return f"{changelist_url}?{urlencode(filters)}"

    statuses = [(choice.value, str(choice.label)) for choice in Job.Status]
    rows = []
    for queue in sorted(by_queue):
        counts = by_queue[queue]
        cells = [
            Cell(status, counts.get(status, 0), url(queue=queue, status__exact=status))
            for status, _label in statuses
        ]
        rows.append(QueueRow(queue, url(queue=queue), cells, sum(counts.values())))
    totals = [
        Cell(status, sum(row.cells[i].count for row in rows), url(status__exact=status))
        for i, (status, _label) in enumerate(statuses)
    ]
    return StatusCounts(statuses, rows, totals, sum(row.total for row in rows))
