"""Start times for the wake-latency scenario, shared by every system's
recording task (stdlib only: peers import it from their own venv).

A recording task appends ``"<n> <time.time()>"`` to the file named by
``$BENCH_STARTS_FILE`` as its first act; the enqueuer notes ``time.time()``
right after its commit returns. Both sides read the same wall clock of the
same machine, so the difference is commit-to-start latency.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

VARIABLE = "BENCH_STARTS_FILE"


def record_start(n: int) -> None:
    """Note that job ``n`` started now (one small O_APPEND write: atomic)."""
    now = time.time()
    path = os.environ.get(VARIABLE)
    if path:
        with open(path, "a", encoding="ascii") as file:
            file.write(f"{n} {now!r}\n")


def read_starts(path: Path) -> dict[int, float]:
    """The start time of every job recorded in ``path`` (the first one wins)."""
    starts: dict[int, float] = {}
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return starts
    for line in text.splitlines():
        n, _, at = line.partition(" ")
        if at:
            starts.setdefault(int(n), float(at))
    return starts
