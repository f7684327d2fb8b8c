"""What a running task can learn about its own job: ``pgq.current_job()``."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from .exceptions import Cancelled, PgqError
from .jobs import Job


@dataclass
class JobContext:
    """The job being run, and whether its cancellation was requested."""

    job: Job
    # Set by the worker's loop, read by the task's thread: a plain flag is enough
    # (one per job; an Event would cost more than a no-op job itself).
    _cancelled: bool = False

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


_current: ContextVar[JobContext] = ContextVar("pgq_current_job")


def current_job() -> JobContext:
    """The job the calling task is running for; raises outside of a pgq job."""
    try:
        return _current.get()
    except LookupError:
        raise PgqError("current_job() was called outside of a job run by a pgq worker") from None


def set_current(context: JobContext) -> None:
    _current.set(context)
