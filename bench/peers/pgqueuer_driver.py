"""PgQueuer driver (see ``driver.py``), on the asyncpg driver: schema by
``Queries.install()`` (what ``pgq install`` runs), ``Queries.enqueue()`` with one
job per call (one transaction each), and with lists for bulk."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
from pgqueuer import AsyncpgDriver, Queries

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.peers import driver


async def _with_queries(args: argparse.Namespace, work: Any) -> dict[str, Any]:
    connection = await asyncpg.connect(args.dsn)
    try:
        result: dict[str, Any] = await work(Queries(AsyncpgDriver(connection)))
        return result
    finally:
        await connection.close()


def install(args: argparse.Namespace) -> dict[str, Any]:
    async def work(queries: Queries) -> dict[str, Any]:
        await queries.install()
        return {}

    return asyncio.run(_with_queries(args, work))


def enqueue_one(args: argparse.Namespace) -> dict[str, Any]:
    async def work(queries: Queries) -> dict[str, Any]:
        start = time.perf_counter()
        for i in range(args.count):
            await queries.enqueue("noop", str(i).encode())
        return {"seconds": time.perf_counter() - start}

    return asyncio.run(_with_queries(args, work))


def enqueue_bulk(args: argparse.Namespace) -> dict[str, Any]:
    async def work(queries: Queries) -> dict[str, Any]:
        start = time.perf_counter()
        for first in range(0, args.count, args.batch):
            numbers = range(first, min(first + args.batch, args.count))
            await queries.enqueue(
                [args.task] * len(numbers), [str(i).encode() for i in numbers], [0] * len(numbers)
            )
        return {"seconds": time.perf_counter() - start}

    return asyncio.run(_with_queries(args, work))


def paced(args: argparse.Namespace) -> dict[str, Any]:
    async def work(queries: Queries) -> dict[str, Any]:
        commits = []
        for n in range(args.first, args.first + args.count):
            await asyncio.sleep(args.pause)
            await queries.enqueue("record_start", str(n).encode())
            commits.append(time.time())
        return {"commits": commits}

    return asyncio.run(_with_queries(args, work))


if __name__ == "__main__":
    driver.main(
        {
            "install": install,
            "enqueue_one": enqueue_one,
            "enqueue_bulk": enqueue_bulk,
            "fill": enqueue_bulk,
            "paced": paced,
        }
    )
