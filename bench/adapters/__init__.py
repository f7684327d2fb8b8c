"""The systems a benchmark compares, behind one small interface.

An adapter knows how to install one queue system in an empty database, how to
enqueue no-op jobs with it and how to start its workers; the scenarios
(``bench.scenarios``) own the databases, the repetitions and the checks.
pgq and the ceiling run in the bench process; a peer (Procrastinate,
PgQueuer, django-tasks-db) runs its driver scripts and workers with the peers' own virtualenv
(``bench/peers/``, ``bench/peers_venv.py``) and is never imported here.

Every adapter times its own work (connections are opened before the clock
starts) and returns seconds.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from ..config import BenchConfig
from .tables import Tables


@dataclass(frozen=True)
class DrainMode:
    """One way to run workers: ``value`` is a worker's concurrency, or a claim
    batch size; ``asynchronous``: the jobs run an ``async def`` task instead of a
    plain function; ``processes``: worker processes at once."""

    label: str
    value: int
    asynchronous: bool = False
    processes: int = 1


@dataclass(frozen=True)
class DrainTiming:
    """wall_seconds: what the caller waited (for worker processes: start to exit).
    db_seconds: first start to last completion, from the system's own timestamps.
    finished: jobs that ended successfully.
    cpu_seconds: CPU (user + system) the client side used, if known; the
    database server's own CPU is not included."""

    wall_seconds: float
    db_seconds: float | None
    finished: int
    cpu_seconds: float | None = None


class Adapter(Protocol):
    name: str
    tables: Tables
    # Systems with the same table shape share one history template database.
    history_key: str

    def drain_modes(self, processes: int) -> Sequence[DrainMode]:
        """The settings to drain with, with ``processes`` worker processes."""

    def serve_mode(self) -> DrainMode | None:
        """The setting of the long-running worker of the latency and memory
        scenarios; None: this system has no such worker (the ceiling)."""

    def install(self, dsn: str) -> None:
        """Create this system's schema in the empty database at ``dsn``."""

    def enqueue_one(self, dsn: str, count: int) -> float:
        """Enqueue ``count`` no-op jobs, one transaction each; seconds taken."""

    def enqueue_bulk(self, dsn: str, count: int, batch: int) -> float:
        """Enqueue ``count`` no-op jobs, ``batch`` per call; seconds taken."""

    def fill(self, dsn: str, count: int, batch: int, mode: DrainMode) -> None:
        """Queue ``count`` jobs of the task ``mode`` runs (not timed)."""

    def drain(self, dsn: str, count: int, mode: DrainMode) -> DrainTiming:
        """Run every queued job (``count`` are expected) and report the timing."""

    def serve(
        self, dsn: str, mode: DrainMode, env: dict[str, str]
    ) -> AbstractContextManager[subprocess.Popen[bytes]]:
        """One worker process in ``mode`` serving until the block ends."""

    def enqueue_paced(self, dsn: str, first: int, count: int, pause: float) -> list[float]:
        """Enqueue recording jobs ``first``.. one at a time, ``pause`` seconds
        apart; for each, ``time.time()`` right after its commit returned."""


def _pgq(config: BenchConfig) -> Adapter:
    from .pgq_adapter import PgqAdapter

    return PgqAdapter(config)


def _ceiling(config: BenchConfig) -> Adapter:
    from .ceiling import CeilingAdapter

    return CeilingAdapter(config)


def _procrastinate(config: BenchConfig) -> Adapter:
    from .peers import ProcrastinateAdapter

    return ProcrastinateAdapter(config)


def _pgqueuer(config: BenchConfig) -> Adapter:
    from .peers import PgQueuerAdapter

    return PgQueuerAdapter(config)


def _django_tasks_db(config: BenchConfig) -> Adapter:
    from .peers import DjangoTasksDbAdapter

    return DjangoTasksDbAdapter(config)


# The system under test, and the one every other is compared with.
SUBJECT = "pgq"
REFERENCE = "ceiling"
# Systems that run from the peers' virtualenv.
PEERS = ("procrastinate", "pgqueuer", "django-tasks-db")

ADAPTERS: dict[str, Callable[[BenchConfig], Adapter]] = {
    SUBJECT: _pgq,
    REFERENCE: _ceiling,
    "procrastinate": _procrastinate,
    "pgqueuer": _pgqueuer,
    "django-tasks-db": _django_tasks_db,
}
