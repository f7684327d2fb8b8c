"""The job: its statuses and the handle returned by ``.delay()``."""

from __future__ import annotations

import enum
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .exceptions import PgqError

if TYPE_CHECKING:
    from .app import App


class JobStatus(str, enum.Enum):
    """The states of a job; the SQL enum ``pgq.job_status`` holds the same list."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_finished(self) -> bool:
        return self in FINISHED_STATUSES

    def __str__(self) -> str:
        return self.value


FINISHED_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


@dataclass(eq=False)
class Job:
    """A job row, as last read from the database. Field names are column names.

    ``refresh()`` reads it again; ``wait()`` polls until it is finished.
    """

    id: int
    queue: str
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    priority: int
    status: JobStatus
    attempts: int
    max_attempts: int
    run_at: datetime
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    worker_id: uuid.UUID | None = None
    last_error: str | None = None
    result: Any = None
    unique_key: str | None = None
    cancel_requested: bool = False
    # While it runs: {"done", "total", "message", "updated_at"} as last reported
    # (see pgq.current_job().report_progress); cleared when an attempt starts.
    progress: dict[str, Any] | None = None
    app: App | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_row(cls, row: Mapping[str, Any], app: App | None = None) -> Job:
        """Build a Job from a ``SELECT *`` row; unknown columns are ignored so
        that code keeps working while a newer migration adds some."""
        values = {f.name: row[f.name] for f in _COLUMNS if f.name in row}
        values["status"] = JobStatus(values["status"])
        return cls(**values, app=app)

    @property
    def error(self) -> str | None:
        """The last error with its traceback, if any attempt failed."""
        return self.last_error

    @property
    def is_finished(self) -> bool:
        return self.status.is_finished

    def _update(self, other: Job) -> Job:
        for f in _COLUMNS:
            setattr(self, f.name, getattr(other, f.name))
        return self

    def _require_app(self) -> App:
        if self.app is None:
            raise PgqError(f"job {self.id} is not bound to an App")
        return self.app

    def refresh(self) -> Job:
        """Read this job again from the database."""
        return self._update(self._require_app().get_job(self.id))

    async def arefresh(self) -> Job:
        return self._update(await self._require_app().aget_job(self.id))

    def wait(self, timeout: float = 30.0, interval: float = 0.05) -> Job:
        """Poll until the job is finished; raise ``TimeoutError`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self.refresh().is_finished:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"job {self.id} still {self.status} after {timeout}s")
            time.sleep(interval)
        return self

    async def await_finished(self, timeout: float = 30.0, interval: float = 0.05) -> Job:
        import asyncio

        deadline = time.monotonic() + timeout
        while not (await self.arefresh()).is_finished:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"job {self.id} still {self.status} after {timeout}s")
            await asyncio.sleep(interval)
        return self


def format_progress(progress: dict[str, Any] | None) -> str:
    """'40/200 (20%) resizing', or '' when the job reported none."""
    if not progress:
        return ""
    done, total = progress.get("done"), progress.get("total")
    text = ""
    if isinstance(done, (int, float)):
        text = f"{done:g}"
        if isinstance(total, (int, float)):
            text += f"/{total:g}" + (f" ({100 * done / total:.0f}%)" if total else "")
    message = progress.get("message")
    return f"{text} {message[:40]}".strip() if message else text


_COLUMNS = tuple(f for f in fields(Job) if f.name != "app")
