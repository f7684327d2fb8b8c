"""The tasks benchmark workers run (``--app bench.tasks:app``): they do nothing,
so a drain measures the queue, not the work."""

from __future__ import annotations

import pgq

from .starts import record_start

app = pgq.App()


@app.task(name="bench.noop")
def noop(n: int) -> None:
    """A sync no-op: runs in the worker's thread pool."""


@app.task(name="bench.async_noop")
async def async_noop(n: int) -> None:
    """An async no-op: runs on the worker's event loop."""


@app.task(name="bench.record_start")
def record(n: int) -> None:
    """Notes when it started (the latency scenario)."""
    record_start(n)
