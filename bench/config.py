"""What a benchmark run does: sizes, repetitions, which scenarios and systems."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

SCENARIOS = (
    "enqueue_one",
    "enqueue_bulk",
    "drain",
    "drain_4proc",
    "latency",
    "drain_history",
    "memory",
)
SYSTEMS = ("pgq", "ceiling", "procrastinate", "pgqueuer", "django-tasks-db")
# django-tasks-db runs one job at a time per worker: at the default sizes it alone
# would take longer than the rest together, so it is run on request (--systems).
DEFAULT_SYSTEMS = SYSTEMS[:4]
PEERS_VENV = Path(__file__).resolve().parent / ".venv-peers"


@dataclass(frozen=True)
class Sizes:
    """Jobs per scenario run; ``history``: finished jobs already in the table
    for ``drain_history`` (which then drains ``drain_history`` queued jobs)."""

    enqueue_one: int = 2_000
    enqueue_bulk: int = 100_000
    drain: int = 20_000
    drain_4proc: int = 20_000
    latency: int = 200
    drain_history: int = 5_000
    history: int = 1_000_000
    memory: int = 100_000

    def with_override(self, text: str) -> Sizes:
        """Apply ``name=N`` (the ``--jobs`` option)."""
        names = [f.name for f in fields(self)]
        name, sep, value = text.partition("=")
        if not sep or name not in names or not value.isdigit() or int(value) < 1:
            raise ValueError(f"--jobs takes NAME=N with NAME in {', '.join(names)}")
        return replace(self, **{name: int(value)})


QUICK_SIZES = Sizes(
    enqueue_one=20,
    enqueue_bulk=300,
    drain=100,
    drain_4proc=100,
    latency=5,
    drain_history=100,
    history=1_000,
    memory=200,
)


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """runs: repetitions of every case (median and min/max are reported).
    memory_runs: repetitions of the memory scenario (slow: ``sizes.memory`` jobs
    through every system's worker), a reading rather than a timing.
    bulk_batch: jobs per bulk call in enqueue_bulk (and when filling for a drain).
    concurrency: pgq worker --concurrency values for the drain (sync task).
    async_concurrency: the same, for drains of an async task.
    ceiling_batches: jobs per claim in the hand-written drain loop.
    processes: worker processes of the drain_4proc scenario.
    latency_pause: seconds between two enqueues of the latency scenario.
    peers_venv: the peers' own virtualenv, created on first use.
    dsn: a server to use (its role must be allowed to CREATE DATABASE); None starts
    a throwaway cluster with fsync on.
    output: where latest.json / latest.md / latest.png go; None: not saved.
    """

    runs: int = 3
    memory_runs: int = 1
    sizes: Sizes = field(default_factory=Sizes)
    bulk_batch: int = 10_000
    concurrency: tuple[int, ...] = (10, 50)
    async_concurrency: tuple[int, ...] = (200,)
    ceiling_batches: tuple[int, ...] = (1, 100)
    processes: int = 4
    latency_pause: float = 0.02
    scenarios: tuple[str, ...] = SCENARIOS
    systems: tuple[str, ...] = DEFAULT_SYSTEMS
    peers_venv: Path = PEERS_VENV
    dsn: str | None = None
    output: Path | None = None
    quick: bool = False

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["dsn"] = "given" if self.dsn else "throwaway cluster"
        values["output"] = str(self.output) if self.output else None
        values["peers_venv"] = str(self.peers_venv)
        return values
