"""Procrastinate's side of the benchmark: the app its worker command loads
(``procrastinate --app bench.peers.procrastinate_app.app worker``), with the
same no-op tasks as pgq's ``bench.tasks``. The DSN comes from ``$BENCH_DSN``."""

from __future__ import annotations

import os

import procrastinate

from bench.starts import record_start

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=os.environ.get("BENCH_DSN", ""))
)


@app.task(name="noop")
def noop(n: int) -> None:
    """A sync no-op (procrastinate runs it in a thread)."""


@app.task(name="async_noop")
async def async_noop(n: int) -> None:
    """An async no-op (on the worker's event loop)."""


@app.task(name="record_start")
def record(n: int) -> None:
    """Notes when it started (the latency scenario)."""
    record_start(n)
