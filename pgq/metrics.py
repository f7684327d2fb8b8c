"""Prometheus metrics of one worker process, served on ``/metrics``
(``pgq worker --metrics-port PORT``; needs the ``metrics`` extra).

With ``--processes P`` each worker process serves its own port: PORT for the
first, PORT+1 for the second, and so on (a process restarted by the
supervisor takes its slot's port again). Scrape them all; sum in queries.

The gauges are read when scraped. A finished job costs one append to a
queue; the counters and the histogram are brought up to date from it when
scraped, in the server's thread, so the worker's loop never takes their locks.
"""

from __future__ import annotations

import multiprocessing
import re
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from .exceptions import ConfigurationError, PgqError

INSTALL_HINT = "pip install 'pgq-jobs[metrics]'"

# Seconds: from a no-op job to a long report.
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def require_client() -> None:
    """Fail early, in one line, when prometheus-client is not installed."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise ConfigurationError(
            f"--metrics-port needs the prometheus-client package: {INSTALL_HINT}"
        ) from None


def port_of_this_process(port: int) -> int:
    """``port`` plus the slot of this process under ``--processes`` (0 without)."""
    match = re.fullmatch(r"pgq-worker-(\d+)", multiprocessing.current_process().name)
    return port + int(match.group(1)) if match else port


class WorkerMetrics:
    """The metrics of one worker and the HTTP server that exposes them."""

    def __init__(self, port: int, running: Callable[[], int], concurrency: int):
        require_client()
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.port = port_of_this_process(port)
        self.registry = CollectorRegistry()
        # (task, status, seconds) of finished attempts not yet counted. Registered
        # first: the registry collects in order, so it is drained before the counters.
        self._pending: deque[tuple[str, str, float]] = deque()
        self.registry.register(_Drain(self._count_pending))
        self._finished = Counter(
            "pgq_jobs_finished",
            "Attempts finished by this worker, by task and resulting status "
            "(queued: it will be retried).",
            ["task", "status"],
            registry=self.registry,
        )
        self._duration = Histogram(
            "pgq_job_duration_seconds",
            "How long each attempt ran, by task.",
            ["task"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        Gauge(
            "pgq_jobs_running", "Jobs this worker runs now.", registry=self.registry
        ).set_function(lambda: float(running()))
        Gauge(
            "pgq_worker_free_slots", "Jobs this worker could start now.", registry=self.registry
        ).set_function(lambda: float(concurrency - running()))
        Gauge(
            "pgq_worker_concurrency", "Jobs this worker runs at most.", registry=self.registry
        ).set(concurrency)
        self._claimed = Histogram(
            "pgq_claim_batch_size",
            "Jobs per claim that returned any.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self._written = Histogram(
            "pgq_outcome_batch_size",
            "Outcomes per write.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self._children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._server: Any = None

    def start(self) -> None:
        from prometheus_client import start_http_server

        try:
            self._server, _ = start_http_server(self.port, registry=self.registry)
        except OSError as exc:
            raise PgqError(f"cannot serve metrics on port {self.port}: {exc.strerror}") from None

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def finished(self, task: str, status: str, seconds: float) -> None:
        self._pending.append((task, status, seconds))

    def _count_pending(self) -> None:
        while True:
            try:
                task, status, seconds = self._pending.popleft()
            except IndexError:
                return
            children = self._children.get((task, status))
            if children is None:
                children = self._children[task, status] = (
                    self._finished.labels(task, status),
                    self._duration.labels(task),
                )
            children[0].inc()
            children[1].observe(seconds)

    def claimed(self, count: int) -> None:
        self._claimed.observe(count)

    def written(self, count: int) -> None:
        self._written.observe(count)


class _Drain:
    """A collector with no metrics of its own: collecting counts what is pending."""

    def __init__(self, drain: Callable[[], None]):
        self._drain = drain

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        self._drain()
        return iter(())
