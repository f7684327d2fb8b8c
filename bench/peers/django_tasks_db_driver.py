"""django-tasks-db driver (see ``driver.py``): schema by Django's ``migrate``,
``task.enqueue()`` in autocommit for one job per transaction. Django's task
API has no bulk enqueue: "bulk" is ``enqueue()`` once per job inside one
``transaction.atomic()`` per batch."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.peers import driver


def _setup(args: argparse.Namespace) -> None:
    os.environ["BENCH_DSN"] = args.dsn
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.peers.django_settings"
    import django

    django.setup()


def _connect() -> None:
    """Open the connection before the clock starts."""
    from django.db import connection

    connection.ensure_connection()


def install(args: argparse.Namespace) -> dict[str, Any]:
    _setup(args)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return {}


def enqueue_one(args: argparse.Namespace) -> dict[str, Any]:
    _setup(args)
    from bench.peers.django_tasks_app import noop

    _connect()
    start = time.perf_counter()
    for i in range(args.count):
        noop.enqueue(i)
    return {"seconds": time.perf_counter() - start}


def enqueue_bulk(args: argparse.Namespace) -> dict[str, Any]:
    _setup(args)
    from django.db import transaction

    from bench.peers.django_tasks_app import noop

    _connect()
    start = time.perf_counter()
    for first in range(0, args.count, args.batch):
        with transaction.atomic():
            for i in range(first, min(first + args.batch, args.count)):
                noop.enqueue(i)
    return {"seconds": time.perf_counter() - start}


def paced(args: argparse.Namespace) -> dict[str, Any]:
    _setup(args)
    from bench.peers.django_tasks_app import record

    _connect()
    commits = []
    for n in range(args.first, args.first + args.count):
        time.sleep(args.pause)
        record.enqueue(n)
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
