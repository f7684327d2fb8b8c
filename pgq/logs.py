"""The worker's log: ``--log-format text`` (key=value in the message, the
default) or ``json``, one object per line for log collectors:

    {"time": "2026-11-23T14:05:09.123+00:00", "level": "WARNING",
     "logger": "pgq.worker", "message": "job=7 task=send attempt=1 status=queued ...",
     "job_id": 7, "task": "send", "attempt": 1, "status": "queued", "duration_ms": 12.5}

The job fields come with the worker's line about each finished job and with
every line logged while a task runs (from its thread or asyncio task), so a
task's own ``logging`` calls carry the job they belong to.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .context import _current

if TYPE_CHECKING:
    from .jobs import Job, JobStatus

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
FORMATS = ("text", "json")
JOB_FIELDS = ("job_id", "task", "attempt", "status", "duration_ms")


def job_fields(job: Job, status: JobStatus, seconds: float) -> dict[str, Any]:
    """The ``extra`` of the worker's line about a finished attempt."""
    return {
        "job_id": job.id,
        "task": job.task,
        "attempt": job.attempts,
        "status": status.value,
        "duration_ms": round(seconds * 1000, 3),
    }


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = record.__dict__
        if "job_id" in fields:
            entry.update((key, fields[key]) for key in JOB_FIELDS if key in fields)
        else:
            running = _current.get(None)  # logged from inside a task
            if running is not None:
                entry.update(
                    job_id=running.job.id, task=running.job.task, attempt=running.job.attempts
                )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure(level: str | int, log_format: str = "text") -> None:
    """Log to stderr at ``level`` in ``log_format`` (what the ``pgq`` command does)."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(log_format))
    logging.basicConfig(level=level, handlers=[handler])
