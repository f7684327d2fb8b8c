"""What a benchmark run does: sizes, repetitions, which scenarios and systems."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

SCENARIOS = ("enqueue_one", "enqueue_bulk", "drain")


@dataclass(frozen=True)
class Sizes:
    """Jobs per scenario run."""

    enqueue_one: int = 2_000
    enqueue_bulk: int = 100_000
    drain: int = 20_000

    def with_override(self, text: str) -> Sizes:
        """Apply ``scenario=N`` (the ``--jobs`` option)."""
        name, sep, value = text.partition("=")
        if not sep or name not in SCENARIOS or not value.isdigit() or int(value) < 1:
            raise ValueError(f"--jobs takes SCENARIO=N with SCENARIO in {', '.join(SCENARIOS)}")
        return replace(self, **{name: int(value)})


QUICK_SIZES = Sizes(enqueue_one=20, enqueue_bulk=300, drain=100)


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """runs: repetitions of every case (median and min/max are reported).
    bulk_batch: jobs per delay_many()/COPY call in enqueue_bulk (and when filling for a drain).
    concurrency: worker --concurrency values for the drain.
    async_concurrency: the same, for drains of an async task.
    ceiling_batches: jobs per claim in the hand-written drain loop.
    dsn: a server to use (its role must be allowed to CREATE DATABASE); None starts
    a throwaway cluster with fsync on.
    output: where latest.json / latest.md go; None: not saved.
    """

    runs: int = 3
    sizes: Sizes = field(default_factory=Sizes)
    bulk_batch: int = 10_000
    concurrency: tuple[int, ...] = (10, 50)
    async_concurrency: tuple[int, ...] = (50,)
    ceiling_batches: tuple[int, ...] = (1, 100)
    scenarios: tuple[str, ...] = SCENARIOS
    systems: tuple[str, ...] = ("pgq", "ceiling")
    dsn: str | None = None
    output: Path | None = None
    quick: bool = False

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["dsn"] = "given" if self.dsn else "throwaway cluster"
        values["output"] = str(self.output) if self.output else None
        return values
