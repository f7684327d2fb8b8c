"""The systems a benchmark compares, behind one small interface.

An adapter knows how to install one queue system in an empty database and how
to enqueue and drain no-op jobs with it; the scenarios (``bench.scenarios``)
own the databases, the repetitions and the checks. A peer (Procrastinate,
PgQueuer...) is one more module here and one more entry in ``ADAPTERS``.

Every adapter times its own work (connections are opened and warmed up before
the clock starts) and returns seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..config import BenchConfig


@dataclass(frozen=True)
class DrainMode:
    """One way to drain: ``value`` is a worker's concurrency, or a claim batch size;
    ``asynchronous``: the jobs run an ``async def`` task instead of a plain function."""

    label: str
    value: int
    asynchronous: bool = False


@dataclass(frozen=True)
class DrainTiming:
    """wall_seconds: what the caller waited (for a worker process: start to exit).
    db_seconds: first claim to last completion, from the jobs' own timestamps.
    finished: jobs that ended successfully.
    cpu_seconds: CPU (user + system) the client side used, if known; the
    database server's own CPU is not included."""

    wall_seconds: float
    db_seconds: float | None
    finished: int
    cpu_seconds: float | None = None


class Adapter(Protocol):
    name: str

    def drain_modes(self) -> Sequence[DrainMode]: ...

    def install(self, dsn: str) -> None:
        """Create this system's schema in the empty database at ``dsn``."""

    def enqueue_one(self, dsn: str, count: int) -> float:
        """Enqueue ``count`` no-op jobs, one transaction each; seconds taken."""

    def enqueue_bulk(self, dsn: str, count: int, batch: int) -> float:
        """Enqueue ``count`` no-op jobs, ``batch`` per call; seconds taken."""

    def fill(self, dsn: str, count: int, batch: int, mode: DrainMode) -> None:
        """Queue ``count`` jobs for a drain in ``mode`` (not timed)."""

    def drain(self, dsn: str, count: int, mode: DrainMode) -> DrainTiming:
        """Run every queued job (``count`` are expected) and report the timing."""

    def count_jobs(self, dsn: str) -> int:
        """Jobs of this system in the database, whatever their status."""


def _pgq(config: BenchConfig) -> Adapter:
    from .pgq_adapter import PgqAdapter

    return PgqAdapter(config)


def _ceiling(config: BenchConfig) -> Adapter:
    from .ceiling import CeilingAdapter

    return CeilingAdapter(config)


# The system every other one is compared with.
REFERENCE = "ceiling"

ADAPTERS: dict[str, Callable[[BenchConfig], Adapter]] = {
    "pgq": _pgq,
    REFERENCE: _ceiling,
}
