"""pgq's benchmarks: throughput of enqueueing and draining jobs on a real
PostgreSQL, next to a hand-written psycopg "ceiling" on the same table.

``python -m bench --help`` lists the options; results go to ``bench/results/``.
Not part of the test suite (``tests/test_bench_smoke.py`` only checks that a
tiny run still works).
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the repository: workers run from here
RESULTS_DIR = Path(__file__).resolve().parent / "results"


class BenchError(Exception):
    """A benchmark run did not do what it should have (not a slow one: a wrong one)."""
