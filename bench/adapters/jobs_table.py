"""Reading pgq.jobs, the table both pgq and the ceiling work on."""

from __future__ import annotations

import psycopg

from pgq.migrate import migrate

from ..queries import QUERIES


def install(dsn: str) -> None:
    migrate(dsn)


def count_jobs(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(QUERIES["count_jobs"]).fetchone()
    assert row is not None
    return int(row[0])


def drain_timing(dsn: str) -> tuple[int, float | None]:
    """(succeeded jobs, seconds from the first claim to the last completion)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(QUERIES["drain_timing"]).fetchone()
    assert row is not None
    finished, seconds = row
    return int(finished), (float(seconds) if seconds is not None else None)
