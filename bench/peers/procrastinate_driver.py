"""Procrastinate driver (see ``driver.py``): schema by ``SchemaManager.apply_schema``
(what ``procrastinate schema --apply`` runs), ``task.defer()`` one job per
transaction, ``task.batch_defer()`` for bulk."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.peers import driver


def _app(args: argparse.Namespace) -> Any:
    os.environ["BENCH_DSN"] = args.dsn
    from bench.peers.procrastinate_app import app

    return app


def _connect(app: Any) -> None:
    """Open the connection pool before the clock starts."""
    app.connector.get_sync_connector().execute_query("SELECT 1")


def install(args: argparse.Namespace) -> dict[str, Any]:
    app = _app(args)
    with app.open():
        app.schema_manager.apply_schema()
    return {}


def enqueue_one(args: argparse.Namespace) -> dict[str, Any]:
    app = _app(args)
    task = app.tasks["noop"]
    with app.open():
        _connect(app)
        start = time.perf_counter()
        for i in range(args.count):
            task.defer(n=i)
        return {"seconds": time.perf_counter() - start}


def enqueue_bulk(args: argparse.Namespace) -> dict[str, Any]:
    app = _app(args)
    task = app.tasks[args.task]
    with app.open():
        _connect(app)
        start = time.perf_counter()
        for first in range(0, args.count, args.batch):
            task.batch_defer(*({"n": i} for i in range(first, min(first + args.batch, args.count))))
        return {"seconds": time.perf_counter() - start}


def paced(args: argparse.Namespace) -> dict[str, Any]:
    app = _app(args)
    task = app.tasks["record_start"]
    commits = []
    with app.open():
        _connect(app)
        for n in range(args.first, args.first + args.count):
            time.sleep(args.pause)
            task.defer(n=n)
            commits.append(time.time())
    return {"commits": commits}


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
