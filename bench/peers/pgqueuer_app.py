"""PgQueuer's side of the benchmark: the factory its worker command loads
(``pgq run bench.peers.pgqueuer_app:create``, PgQueuer's own ``pgq`` script),
with async no-op entrypoints on the asyncpg driver. The DSN comes from
``$BENCH_DSN``; a job's payload is its number, as ASCII."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

import asyncpg
from pgqueuer import AsyncpgDriver, Job, PgQueuer

from bench.starts import record_start


@contextlib.asynccontextmanager
async def create() -> AsyncIterator[PgQueuer]:
    connection = await asyncpg.connect(os.environ["BENCH_DSN"])
    queuer = PgQueuer(AsyncpgDriver(connection))

    @queuer.entrypoint("noop")
    async def noop(job: Job) -> None:
        """An async no-op (PgQueuer's entrypoints are coroutines)."""

    @queuer.entrypoint("record_start")
    async def record(job: Job) -> None:
        record_start(int(job.payload or b"0"))

    try:
        yield queuer
    finally:
        await connection.close()
