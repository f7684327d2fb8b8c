"""What happens to a job after an attempt: pure functions, no I/O."""

from __future__ import annotations

import random
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from .exceptions import Cancelled, Fail, Retry
from .jobs import JobStatus

MAX_BACKOFF_SECONDS = 3600.0
# Any retry delay is cut to this (ten years): a longer one means "never", and a
# huge one would overflow PostgreSQL's interval arithmetic and fail the write.
MAX_RETRY_IN_SECONDS = 10 * 365 * 86400.0

# A task's retry_backoff: a base delay in seconds, or attempt -> seconds.
Backoff = float | Callable[[int], float]


def backoff_delay(
    attempt: int, backoff: Backoff, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before the attempt after ``attempt`` (1-based).

    Exponential (base, 2 x base, 4 x base...) capped at an hour, with "equal
    jitter": half the delay is fixed, half random, so retries of jobs that
    failed together spread out instead of hitting a recovering service at once.
    """
    if not isinstance(backoff, (int, float)):
        return max(0.0, float(backoff(attempt)))
    # 2.0 ** 1024 overflows; any base worth using reaches the cap long before 2 ** 1000.
    exponential = min(MAX_BACKOFF_SECONDS, backoff * 2.0 ** min(max(0, attempt - 1), 1000))
    return exponential / 2 + rand() * exponential / 2


@dataclass(frozen=True)
class Outcome:
    """The result of one attempt, as it will be written to the job row."""

    job_id: int
    worker_id: uuid.UUID  # with attempts, the fencing token of the attempt
    attempts: int
    status: JobStatus
    result: str | None = None  # JSON text
    error: str | None = None
    retry_in: float = 0.0


@dataclass(frozen=True)
class Verdict:
    """What to do with a job after an attempt raised."""

    status: JobStatus
    error: str
    retry_in: float = 0.0


def format_error(exc: BaseException) -> str:
    """The message first, then the traceback, as stored in ``last_error``."""
    try:
        text = str(exc)
    except Exception:  # an exception whose __str__ fails must still be recorded
        text = "<exception str() failed>"
    message = f"{type(exc).__qualname__}: {text}".rstrip(": ")
    if exc.__traceback__ is None and exc.__cause__ is None and exc.__context__ is None:
        return message.replace("\x00", "\\x00")  # never raised (a crash report): no trace
    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    # PostgreSQL text cannot hold NUL characters: the write would fail.
    return f"{message}\n\n{trace}".replace("\x00", "\\x00")


def judge_failure(
    exc: BaseException,
    *,
    attempts: int,
    max_attempts: int,
    retry_on: tuple[type[BaseException], ...],
    backoff: Backoff,
    cancel_requested: bool = False,
) -> Verdict:
    """Retry, fail or cancel after ``exc`` ended attempt number ``attempts``."""
    error = format_error(exc)
    if cancel_requested or isinstance(exc, Cancelled):
        return Verdict(JobStatus.CANCELLED, error)
    if attempts >= max_attempts:
        return Verdict(JobStatus.FAILED, error)
    if isinstance(exc, Retry):
        return Verdict(JobStatus.QUEUED, error, min(exc.in_seconds, MAX_RETRY_IN_SECONDS))
    if isinstance(exc, retry_on) and not isinstance(exc, Fail):
        delay = min(backoff_delay(attempts, backoff), MAX_RETRY_IN_SECONDS)
        return Verdict(JobStatus.QUEUED, error, delay)
    return Verdict(JobStatus.FAILED, error)
