"""PgQueuer's worker as ``pgq run bench.peers.pgqueuer_app:create --batch-size B
--mode M`` starts it (``pgqueuer.run`` on uvloop, as its CLI does). Not the
command itself: in pgqueuer 1.6.0 ``pgq run`` fails at start-up with the typer
release pip resolves today (``AttributeError: 'str' object has no attribute
'name'`` in ``setup_fancy_logger``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from datetime import timedelta
from pathlib import Path

import pgqueuer
from pgqueuer.domain.types import QueueExecutionMode

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

try:
    import uvloop
except ImportError:  # pragma: no cover - PgQueuer depends on it
    uvloop = None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--mode", choices=[m.value for m in QueueExecutionMode], default="drain")
    parser.add_argument("--dequeue-timeout", type=float, default=30.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    work = pgqueuer.run(
        "bench.peers.pgqueuer_app:create",
        batch_size=args.batch_size,
        mode=QueueExecutionMode(args.mode),
        dequeue_timeout=timedelta(seconds=args.dequeue_timeout),
    )
    if uvloop is not None:
        uvloop.run(work)
    else:
        asyncio.run(work)


if __name__ == "__main__":
    main()
