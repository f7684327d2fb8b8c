"""What every peer driver script shares: its command line and its JSON answer.

``python bench/peers/<peer>_driver.py COMMAND --dsn DSN [--count N] [--batch B]
[--task T] [--pause S]`` runs one COMMAND and prints one JSON object:

- ``install``: the peer's schema, its own documented way; ``{}``.
- ``enqueue_one``: ``count`` jobs, one transaction each; ``{"seconds": s}``.
- ``enqueue_bulk`` / ``fill``: ``count`` jobs through the peer's bulk API,
  ``batch`` per call, of task ``task``; ``{"seconds": s}``.
- ``paced``: recording jobs ``first``, ``first + 1``... (``count`` of them) one at a
  time, ``pause`` seconds apart;
  ``{"commits": [time.time() right after each commit returned]}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from typing import Any

Command = Callable[[argparse.Namespace], dict[str, Any]]
COMMANDS = ("install", "enqueue_one", "enqueue_bulk", "fill", "paced")


def main(commands: Mapping[str, Command]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=sorted(commands))
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--task", default="noop")
    parser.add_argument("--pause", type=float, default=0.0)
    parser.add_argument("--first", type=int, default=0)
    args = parser.parse_args()
    answer = commands[args.command](args)
    sys.stdout.write(json.dumps(answer) + "\n")
