"""The scenarios: what is measured, on which system, with which setup.

Each measurement gets a fresh database (created, migrated, settled), so runs
cannot affect each other through table bloat, statistics or sequences.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from . import BenchError
from .adapters import Adapter, DrainMode
from .config import BenchConfig
from .server import Server


@dataclass(frozen=True)
class Sample:
    """One measurement: ``seconds`` for ``jobs`` jobs; for a drain, ``seconds``
    is the database's view and ``wall_seconds`` what the caller waited."""

    jobs: int
    seconds: float
    wall_seconds: float | None = None
    cpu_seconds: float | None = None


@dataclass(frozen=True)
class Case:
    scenario: str
    system: str
    variant: str
    jobs: int
    measure: Callable[[Server], Sample]

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.scenario, self.system, self.variant)


def build_cases(config: BenchConfig, adapters: Sequence[Adapter]) -> list[Case]:
    sizes, batch = config.sizes, config.bulk_batch
    cases = []
    for scenario in config.scenarios:
        for adapter in adapters:
            if scenario == "enqueue_one":
                cases.append(
                    Case(
                        scenario,
                        adapter.name,
                        "1 job/transaction",
                        sizes.enqueue_one,
                        _enqueue_one(adapter, sizes.enqueue_one),
                    )
                )
            elif scenario == "enqueue_bulk":
                count = sizes.enqueue_bulk
                cases.append(
                    Case(
                        scenario,
                        adapter.name,
                        f"{min(batch, count)}/call",
                        count,
                        _enqueue_bulk(adapter, count, batch),
                    )
                )
            elif scenario == "drain":
                for mode in adapter.drain_modes():
                    cases.append(
                        Case(
                            scenario,
                            adapter.name,
                            mode.label,
                            sizes.drain,
                            _drain(adapter, sizes.drain, mode, batch),
                        )
                    )
    return cases


def _expect(what: str, actual: int, expected: int) -> None:
    if actual != expected:
        raise BenchError(f"{what}: expected {expected} jobs, found {actual}")


def _enqueue_one(adapter: Adapter, count: int) -> Callable[[Server], Sample]:
    def measure(server: Server) -> Sample:
        with server.fresh_database() as dsn:
            adapter.install(dsn)
            server.settle(dsn)
            seconds = adapter.enqueue_one(dsn, count)
            _expect(f"{adapter.name} enqueue_one", adapter.count_jobs(dsn), count)
        return Sample(count, seconds)

    return measure


def _enqueue_bulk(adapter: Adapter, count: int, batch: int) -> Callable[[Server], Sample]:
    def measure(server: Server) -> Sample:
        with server.fresh_database() as dsn:
            adapter.install(dsn)
            server.settle(dsn)
            seconds = adapter.enqueue_bulk(dsn, count, batch)
            _expect(f"{adapter.name} enqueue_bulk", adapter.count_jobs(dsn), count)
        return Sample(count, seconds)

    return measure


def _drain(adapter: Adapter, count: int, mode: DrainMode, batch: int) -> Callable[[Server], Sample]:
    def measure(server: Server) -> Sample:
        with server.fresh_database() as dsn:
            adapter.install(dsn)
            adapter.fill(dsn, count, batch, mode)
            server.settle(dsn)
            timing = adapter.drain(dsn, count, mode)
            _expect(f"{adapter.name} drain ({mode.label})", timing.finished, count)
        seconds = timing.db_seconds if timing.db_seconds else timing.wall_seconds
        return Sample(count, seconds, timing.wall_seconds, timing.cpu_seconds)

    return measure
