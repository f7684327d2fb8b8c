"""What ``pgq status`` (and ``manage.py pgq_status``) shows: one row per queue,
the live workers, tasks no live worker knows; once or redrawn (``--watch``).

The per-queue numbers come from one statement that reads only the partial
indexes of waiting and running jobs and the index of finished jobs over a
short window (see ``queue_overview`` in queries/jobs.sql), so it stays cheap
on a table with millions of finished jobs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from . import store

if TYPE_CHECKING:
    from .app import App

# Succeeded jobs are counted over this many seconds (the query's window).
THROUGHPUT_WINDOW = 60.0

# Cursor home and clear screen, for --watch on a terminal.
CLEAR_SCREEN = "\033[H\033[2J"

COLUMNS = ("queue", "queued", "scheduled", "running", "failed/1h", "jobs/s", "oldest")


@dataclass(frozen=True)
class Status:
    queues: list[dict[str, Any]]
    workers: list[dict[str, Any]]
    orphaned_tasks: list[dict[str, Any]]

    def as_json(self) -> dict[str, Any]:
        return {
            "queues": self.queues,
            "workers": self.workers,
            "orphaned_tasks": self.orphaned_tasks,
        }


def read_status(app: App) -> Status:
    queues = [
        {**row, "throughput_per_s": round(row["succeeded_last_minute"] / THROUGHPUT_WINDOW, 3)}
        for row in app.execute(store.queue_overview())
    ]
    return Status(
        queues=queues,
        workers=app.execute(store.list_workers()),
        orphaned_tasks=app.execute(store.orphaned_tasks()),
    )


def render(status: Status) -> str:
    lines = table(
        [
            list(COLUMNS),
            *(
                [
                    q["queue"],
                    str(q["queued"]),
                    str(q["scheduled"]),
                    str(q["running"]),
                    str(q["failed_last_hour"]),
                    rate(q["throughput_per_s"]),
                    age(q["oldest_waiting_s"]),
                ]
                for q in status.queues
            ),
        ]
    )
    if not status.queues:
        lines = ["no jobs waiting, running or finished lately"]
    alive = [w for w in status.workers if w["alive"]]
    lines.append("")
    lines.append(f"live workers: {len(alive)}")
    for w in alive:
        queues_text = ",".join(w["queues"]) if w["queues"] else "*"
        lines.append(
            f"  {w['hostname']} pid={w['pid']} queues={queues_text} "
            f"concurrency={w['concurrency']} id={w['id']}"
        )
    for orphan in status.orphaned_tasks:
        lines.append(
            f"warning: {orphan['count']} job(s) of task {orphan['task']!r} in queue "
            f"{orphan['queue']!r} wait for a worker that knows the task"
        )
    return "\n".join(lines)


def rate(per_second: float) -> str:
    return f"{per_second:.2f}" if per_second < 10 else f"{per_second:.0f}"


def age(seconds: float | None) -> str:
    """'-', '4.2s', '3m05s', '2h07m', '3d04h'."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{max(seconds, 0.0):.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def watch(
    frame: Callable[[], str],
    interval: float,
    write: Callable[[str], object],
    *,
    clear: bool,
) -> None:
    """Write ``frame()`` every ``interval`` seconds until Ctrl-C, which returns.
    On a terminal each frame replaces the last; elsewhere frames follow each other."""
    try:
        while True:
            stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
            header = f"pgq status at {stamp}, every {interval:g}s (Ctrl-C to stop)"
            text = f"{header}\n\n{frame()}\n"
            write(CLEAR_SCREEN + text if clear else text + "\n")
            time.sleep(interval)
    except KeyboardInterrupt:
        return


def table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
