"""The scenarios: what is measured, on which system, with which setup.

Each measurement gets a fresh database (created, migrated, settled), so runs
cannot affect each other through table bloat, statistics or sequences. The
history of ``drain_history`` is written once per system into a template
database that every run copies.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import BenchError
from .adapters import Adapter, DrainMode, processes
from .config import BenchConfig
from .server import Server
from .starts import VARIABLE, read_starts

THROUGHPUT = ("enqueue_one", "enqueue_bulk", "drain", "drain_4proc", "drain_history")
# What each scenario reports first, in which unit, and which way is better.
PRIMARY = {
    **{scenario: ("jobs/s", "higher") for scenario in THROUGHPUT},
    "latency": ("ms p50", "lower"),
    "memory": ("MB RSS after", "lower"),
}

# The number of the job that proves a served worker is up (never a measured one).
WARM_UP = 1_000_000_000


@dataclass(frozen=True)
class Sample:
    """One measurement of ``jobs`` jobs. Throughput: ``seconds`` (for a drain,
    the database's view) and ``wall_seconds`` (what the caller waited);
    latency and memory: named ``metrics``."""

    jobs: int
    seconds: float | None = None
    wall_seconds: float | None = None
    cpu_seconds: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    def primary(self, scenario: str) -> float:
        if scenario == "latency":
            return self.metrics["p50_ms"]
        if scenario == "memory":
            return self.metrics["after_mb"]
        assert self.seconds
        return self.jobs / self.seconds

    def describe(self, scenario: str) -> str:
        if scenario == "latency":
            m = self.metrics
            return f"p50 {m['p50_ms']:.1f} p95 {m['p95_ms']:.1f} p99 {m['p99_ms']:.1f} ms"
        if scenario == "memory":
            m = self.metrics
            return f"RSS idle {m['idle_mb']:.1f} MB, after {m['after_mb']:.1f} MB"
        return f"{self.primary(scenario):,.0f} jobs/s"


@dataclass(frozen=True)
class Case:
    scenario: str
    system: str
    variant: str
    jobs: int
    measure: Callable[[Server], Sample]
    runs: int

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.scenario, self.system, self.variant)


def build_cases(config: BenchConfig, adapters: Sequence[Adapter]) -> list[Case]:
    sizes, batch, runs = config.sizes, config.bulk_batch, config.runs
    cases = []
    for scenario in config.scenarios:
        for adapter in adapters:
            name = adapter.name
            if scenario == "enqueue_one":
                n = sizes.enqueue_one
                cases.append(
                    Case(scenario, name, "1 job/transaction", n, _enqueue_one(adapter, n), runs)
                )
            elif scenario == "enqueue_bulk":
                n = sizes.enqueue_bulk
                cases.append(
                    Case(
                        scenario,
                        name,
                        f"{min(batch, n)}/call",
                        n,
                        _enqueue_bulk(adapter, n, batch),
                        runs,
                    )
                )
            elif scenario in ("drain", "drain_4proc", "drain_history"):
                n = getattr(sizes, scenario)
                history = sizes.history if scenario == "drain_history" else 0
                workers = config.processes if scenario == "drain_4proc" else 1
                for mode in adapter.drain_modes(workers):
                    cases.append(
                        Case(
                            scenario,
                            name,
                            mode.label,
                            n,
                            _drain(adapter, n, mode, batch, history),
                            runs,
                        )
                    )
            elif scenario in ("latency", "memory"):
                served = adapter.serve_mode()
                if served is None:
                    continue
                if scenario == "latency":
                    n = sizes.latency
                    measure = _latency(adapter, served, n, config.latency_pause)
                    cases.append(Case(scenario, name, served.label, n, measure, runs))
                else:
                    n = sizes.memory
                    measure = _memory(adapter, served, n, batch)
                    cases.append(Case(scenario, name, served.label, n, measure, config.memory_runs))
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
            _expect(f"{adapter.name} enqueue_one", adapter.tables.count_jobs(dsn), count)
        return Sample(count, seconds)

    return measure


def _enqueue_bulk(adapter: Adapter, count: int, batch: int) -> Callable[[Server], Sample]:
    def measure(server: Server) -> Sample:
        with server.fresh_database() as dsn:
            adapter.install(dsn)
            server.settle(dsn)
            seconds = adapter.enqueue_bulk(dsn, count, batch)
            _expect(f"{adapter.name} enqueue_bulk", adapter.tables.count_jobs(dsn), count)
        return Sample(count, seconds)

    return measure


def _drain(
    adapter: Adapter, count: int, mode: DrainMode, batch: int, history: int
) -> Callable[[Server], Sample]:
    def build_history(dsn: str) -> None:
        adapter.install(dsn)
        adapter.tables.fill_history(dsn, history)

    def measure(server: Server) -> Sample:
        template = (
            server.template(f"{adapter.history_key}:{history}", build_history) if history else None
        )
        with server.fresh_database(template) as dsn:
            if template is None:
                adapter.install(dsn)
            adapter.fill(dsn, count, batch, mode)
            server.settle(dsn)
            timing = adapter.drain(dsn, count, mode)
            _expect(f"{adapter.name} drain ({mode.label})", timing.finished, count)
        seconds = timing.db_seconds if timing.db_seconds else timing.wall_seconds
        return Sample(count, seconds, timing.wall_seconds, timing.cpu_seconds)

    return measure


def _warm_up(adapter: Adapter, dsn: str, starts: Path) -> None:
    """One recording job, run: the worker is up, connected and listening."""
    adapter.enqueue_paced(dsn, WARM_UP, 1, 0.0)
    processes.wait_for(lambda: WARM_UP in read_starts(starts), "the worker to start", 120)
    time.sleep(0.5)  # its outcome written: the worker is idle


def _percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted values."""
    index = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


def _latency(
    adapter: Adapter, mode: DrainMode, count: int, pause: float
) -> Callable[[Server], Sample]:
    def measure(server: Server) -> Sample:
        with server.fresh_database() as dsn, tempfile.TemporaryDirectory() as tmp:
            adapter.install(dsn)
            server.settle(dsn)
            path = Path(tmp) / "starts"
            with adapter.serve(dsn, mode, {VARIABLE: str(path)}):
                _warm_up(adapter, dsn, path)
                commits = adapter.enqueue_paced(dsn, 0, count, pause)
                processes.wait_for(
                    lambda: len(read_starts(path)) > count, f"{count} jobs to start", 60
                )
            starts = read_starts(path)
        latencies = sorted((starts[n] - commits[n]) * 1000 for n in range(count))
        return Sample(
            count,
            metrics={
                "p50_ms": _percentile(latencies, 0.50),
                "p95_ms": _percentile(latencies, 0.95),
                "p99_ms": _percentile(latencies, 0.99),
                "max_ms": latencies[-1],
                "mean_ms": statistics.fmean(latencies),
            },
        )

    return measure


def _memory(
    adapter: Adapter, mode: DrainMode, count: int, batch: int
) -> Callable[[Server], Sample]:
    def measure(server: Server) -> Sample:
        with server.fresh_database() as dsn, tempfile.TemporaryDirectory() as tmp:
            adapter.install(dsn)
            server.settle(dsn)
            path = Path(tmp) / "starts"
            with adapter.serve(dsn, mode, {VARIABLE: str(path)}) as worker:
                _warm_up(adapter, dsn, path)
                time.sleep(0.5)
                idle, _ = processes.memory_kb(worker.pid)
                start = time.perf_counter()
                adapter.fill(dsn, count, batch, mode)  # the worker runs them as they come
                processes.wait_for(
                    lambda: adapter.tables.count_finished(dsn) > count,
                    f"{count} jobs to finish",
                    max(120.0, count / 20),
                    interval=0.25,
                )
                seconds = time.perf_counter() - start
                time.sleep(1.0)
                after, peak = processes.memory_kb(worker.pid)
        return Sample(
            count,
            seconds,
            metrics={"idle_mb": idle / 1024, "after_mb": after / 1024, "peak_mb": peak / 1024},
        )

    return measure
