"""What a running task can learn about its own job: ``pgq.current_job()``."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from . import store
from .exceptions import Cancelled, InvalidOptions, PgqError
from .jobs import Job

logger = logging.getLogger("pgq.worker")

# At most one progress write per job per this many seconds: a task may report
# in a tight loop without loading the database. The last value is not lost:
# it is written when the task returns (see JobContext.report_progress).
PROGRESS_INTERVAL = 1.0
MAX_PROGRESS_MESSAGE = 1000


@dataclass
class _Progress:
    """Throttling state of one job's progress reports."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    written_at: float = -math.inf  # time.monotonic() of the last write
    pending: tuple[float, float | None, str | None] | None = None
    writes: set[asyncio.Future[None]] = field(default_factory=set)


@dataclass
class JobContext:
    """The job being run, and whether its cancellation was requested."""

    job: Job
    # Set by the worker's loop, read by the task's thread: a plain flag is enough
    # (one per job; an Event would cost more than a no-op job itself).
    _cancelled: bool = False
    _progress: _Progress | None = None

    @property
    def id(self) -> int:
        return self.job.id

    @property
    def attempt(self) -> int:
        """1 for the first attempt."""
        return self.job.attempts

    @property
    def cancel_requested(self) -> bool:
        """True once someone called ``cancel()`` on this running job."""
        return self._cancelled

    def request_cancel(self) -> None:
        self._cancelled = True

    def raise_if_cancelled(self) -> None:
        """A convenient check point: raises ``pgq.Cancelled`` if cancellation was requested."""
        if self._cancelled:
            raise Cancelled(f"job {self.id} was cancelled")

    # Progress.

    @property
    def reported_progress(self) -> bool:
        return self._progress is not None

    def report_progress(
        self, done: float, total: float | None = None, message: str | None = None
    ) -> None:
        """Record how far the job is (``done`` of ``total`` units, and a short
        message), shown by ``pgq jobs``, ``Job.progress`` and the admin.

        Throttled to one write per second per job; a report within that second
        is kept and written by the next report after it, or when the task
        returns, so the last value reported is always stored. Called from a
        running event loop (an async task), the write runs in a thread and never
        blocks the loop (``await areport_progress(...)`` waits for it).
        """
        value = progress_value(done, total, message)
        if self._take(value):
            self._dispatch(value)

    async def areport_progress(
        self, done: float, total: float | None = None, message: str | None = None
    ) -> None:
        """``report_progress`` that waits for its write, if one was due."""
        value = progress_value(done, total, message)
        if self._take(value) and (write := self._dispatch(value)) is not None:
            await write

    def flush_progress(self) -> None:
        """Write the last value held back by the throttle (the worker calls this
        when a sync task returns)."""
        state = self._progress
        if state is None:
            return
        with state.lock:
            value, state.pending = state.pending, None
        if value is not None:
            self._write(value)

    async def aflush_progress(self) -> None:
        """Wait for writes in flight, then write the value held back, if any."""
        state = self._progress
        if state is None:
            return
        while state.writes:
            await asyncio.gather(*state.writes, return_exceptions=True)
        with state.lock:
            value, state.pending = state.pending, None
        if value is not None and (write := self._dispatch(value)) is not None:
            await write

    def _take(self, value: tuple[float, float | None, str | None]) -> bool:
        """Hold ``value``; True if it is to be written now."""
        if self._progress is None:
            self._progress = _Progress()
        state = self._progress
        now = time.monotonic()
        with state.lock:
            if now - state.written_at < PROGRESS_INTERVAL:
                state.pending = value
                return False
            state.written_at, state.pending = now, None
            return True

    def _dispatch(
        self, value: tuple[float, float | None, str | None]
    ) -> asyncio.Future[None] | None:
        """Write now in this thread, or, on an event loop, in a thread of its own
        (the future of that write)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write(value)
            return None
        future = loop.run_in_executor(None, self._write, value)
        assert self._progress is not None
        writes = self._progress.writes
        writes.add(future)
        future.add_done_callback(writes.discard)
        return future

    def _write(self, value: tuple[float, float | None, str | None]) -> None:
        job = self.job
        if job.app is None or job.worker_id is None:
            raise PgqError("progress can only be reported by a job run by a pgq worker")
        try:
            job.app.execute(store.set_job_progress(job.id, job.worker_id, job.attempts, *value))
        except PgqError as exc:  # progress is for display: a failed write is not the job's
            logger.warning("job=%d progress not recorded: %s", job.id, exc)


def progress_value(
    done: Any, total: Any = None, message: Any = None
) -> tuple[float, float | None, str | None]:
    """Check a progress report; InvalidOptions names what is wrong."""
    for name, number in (("done", done), ("total", total)):
        if number is None and name == "total":
            continue
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise InvalidOptions(f"progress {name} must be a number, got {number!r}")
        if not 0 <= number < math.inf:
            raise InvalidOptions(f"progress {name} must be >= 0 and finite, got {number!r}")
    if message is not None:
        if not isinstance(message, str):
            raise InvalidOptions(f"progress message must be a string, got {type(message).__name__}")
        if len(message) > MAX_PROGRESS_MESSAGE:
            raise InvalidOptions(
                f"progress message is {len(message)} characters long, at most "
                f"{MAX_PROGRESS_MESSAGE} are kept"
            )
    return float(done), None if total is None else float(total), message


_current: ContextVar[JobContext] = ContextVar("pgq_current_job")


def current_job() -> JobContext:
    """The job the calling task is running for; raises outside of a pgq job."""
    try:
        return _current.get()
    except LookupError:
        raise PgqError("current_job() was called outside of a job run by a pgq worker") from None


def set_current(context: JobContext) -> None:
    _current.set(context)
