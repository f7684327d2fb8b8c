"""Tasks: a function registered with an App, and how calls to it become jobs."""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from typing_extensions import ParamSpec

from . import db, store, validation
from .exceptions import InvalidOptions
from .jobs import Job
from .retry import Backoff
from .serialization import encode_arguments

if TYPE_CHECKING:
    from .app import App

P = ParamSpec("P")
R = TypeVar("R")

UniqueKey = bool | Callable[..., str]

# Options that .using() may change for the calls made through its copy.
CALL_OPTIONS = frozenset(
    {"run_after", "priority", "queue", "unique_key", "connection", "max_attempts"}
)


@dataclass(frozen=True, kw_only=True)
class Task(Generic[P, R]):
    """A registered function. Call it to run it here; ``.delay()`` to queue it.

    Instances are immutable: ``using()`` returns a copy with other options.
    """

    func: Callable[P, R]
    app: App = field(repr=False)
    name: str
    queue: str = "default"
    priority: int = 0
    max_attempts: int = 3
    timeout: float | None = None
    retry_backoff: Backoff = 2.0
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    unique: UniqueKey = False
    # Per-call options, usually set through using().
    run_after: timedelta | datetime | None = None
    unique_key: str | None = None
    connection: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        validation.task_name(self.name)
        validation.queue_name(self.queue)
        validation.priority(self.priority)
        validation.max_attempts(self.max_attempts)
        object.__setattr__(self, "timeout", validation.timeout(self.timeout))
        object.__setattr__(self, "run_after", validation.run_after(self.run_after))
        validation.unique_key(self.unique_key)
        if not callable(self.retry_backoff) and (
            not isinstance(self.retry_backoff, (int, float)) or self.retry_backoff < 0
        ):
            raise InvalidOptions(
                f"retry_backoff must be seconds >= 0 or a callable, got {self.retry_backoff!r}"
            )
        if not all(isinstance(t, type) and issubclass(t, BaseException) for t in self.retry_on):
            raise InvalidOptions(
                f"retry_on must be a tuple of exception classes, got {self.retry_on!r}"
            )

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.func)

    def __call__(self, /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function here and now, as a plain call."""
        return self.func(*args, **kwargs)

    def using(self, **options: Any) -> Task[P, R]:
        """A copy whose jobs get these options: ``run_after`` (timedelta, seconds or an
        aware datetime), ``priority``, ``queue``, ``unique_key``, ``max_attempts`` and
        ``connection`` (enqueue inside that connection's transaction)."""
        unknown = set(options) - CALL_OPTIONS
        if unknown:
            raise InvalidOptions(
                f"using() got unknown option(s) {', '.join(sorted(unknown))}; "
                f"expected {', '.join(sorted(CALL_OPTIONS))}"
            )
        return replace(self, **options)

    # Turning a call into a row: pure, shared by every enqueue path.

    def _new_job(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> store.NewJob:
        args_json, kwargs_json = encode_arguments(
            self.name, args, kwargs, max_bytes=self.app.max_argument_bytes
        )
        run_at, delay = None, 0.0
        if isinstance(self.run_after, datetime):
            run_at = self.run_after
        elif isinstance(self.run_after, timedelta):
            delay = self.run_after.total_seconds()
        return store.NewJob(
            queue=self.queue,
            task=self.name,
            args=args_json,
            kwargs=kwargs_json,
            priority=self.priority,
            max_attempts=self.max_attempts,
            run_at=run_at,
            delay=delay,
            unique_key=self._unique_key_for(args_json, kwargs_json, args, kwargs),
        )

    def _unique_key_for(
        self, args_json: str, kwargs_json: str, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> str | None:
        if self.unique_key is not None or self.unique is False:
            return self.unique_key
        if self.unique is True:
            digest = hashlib.sha256(f"{args_json}\n{kwargs_json}".encode()).hexdigest()[:32]
            return f"{self.name}:{digest}"
        return validation.unique_key(self.unique(*args, **kwargs))

    def _new_jobs(self, calls: Iterable[Sequence[Any] | Mapping[str, Any]]) -> list[store.NewJob]:
        if self.unique_key is not None:
            raise InvalidOptions("unique_key names one job; it cannot apply to delay_many()")
        jobs = []
        for call in calls:
            if isinstance(call, Mapping):
                jobs.append(self._new_job((), call))
            elif isinstance(call, Sequence) and not isinstance(call, (str, bytes)):
                jobs.append(self._new_job(call, {}))
            else:
                raise InvalidOptions(
                    "delay_many() takes an iterable of argument tuples or keyword dicts, "
                    f"got an item {call!r}"
                )
        return jobs

    # Enqueueing.

    def delay(self, /, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Queue one run of this task; returns its Job (the existing one when a
        live job holds the same unique key)."""
        new = self._new_job(args, kwargs)
        return Job.from_row(self.app.execute(store.insert_job(new), self.connection), self.app)

    async def adelay(self, /, *args: P.args, **kwargs: P.kwargs) -> Job:
        new = self._new_job(args, kwargs)
        row = await self.app.aexecute(store.insert_job(new), self.connection)
        return Job.from_row(row, self.app)

    def delay_many(self, calls: Iterable[Sequence[Any] | Mapping[str, Any]]) -> list[int]:
        """Queue many runs at once (one statement); returns the new job ids in order.

        Each item is a tuple of positional arguments or a dict of keyword ones.
        """
        operation = self._bulk_operation(self._new_jobs(calls))
        return self.app.execute(operation, self.connection, atomic=True)

    async def adelay_many(self, calls: Iterable[Sequence[Any] | Mapping[str, Any]]) -> list[int]:
        jobs = self._new_jobs(calls)
        return await self.app.aexecute(self._bulk_operation(jobs), self.connection, atomic=True)

    def _bulk_operation(self, jobs: list[store.NewJob]) -> db.Operation[list[int]]:
        if self.unique is False:
            return store.insert_jobs(jobs)
        return _insert_each(jobs)  # each unique key may meet a live job


def _insert_each(jobs: list[store.NewJob]) -> db.Operation[list[int]]:
    ids = []
    for job in jobs:
        row = yield from store.insert_job(job)
        ids.append(row["id"])
    return ids
