"""Reading and writing a system's own tables with plain SQL from the bench
process (no peer library needed): counts, the drain's timing as the database
recorded it, and finished-job history in the shape that system leaves it.

Each system's statements are named ``<prefix>count_jobs``, ``<prefix>count_finished``,
``<prefix>drain_timing`` and ``<prefix>fill_history`` in ``bench/queries.sql``.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

import psycopg

from ..queries import QUERIES


def _row(dsn: str, name: str, **params: Any) -> tuple[Any, ...]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(QUERIES[name], params).fetchone()
    assert row is not None
    return tuple(row)


def database_now(dsn: str) -> datetime.datetime:
    """The server's clock: drains are timed from its timestamps, so the cut-off is too."""
    value = _row(dsn, "database_now")[0]
    assert isinstance(value, datetime.datetime)
    return value


@dataclass(frozen=True)
class Tables:
    prefix: str = ""

    def count_jobs(self, dsn: str) -> int:
        """Jobs of this system in the database, whatever their status."""
        return int(_row(dsn, f"{self.prefix}count_jobs")[0])

    def count_finished(self, dsn: str) -> int:
        """Jobs that ran and succeeded."""
        return int(_row(dsn, f"{self.prefix}count_finished")[0])

    def drain_timing(self, dsn: str, since: datetime.datetime) -> tuple[int, float | None]:
        """(jobs succeeded, seconds from the first start to the last completion),
        counting only jobs started at or after ``since``."""
        finished, seconds = _row(dsn, f"{self.prefix}drain_timing", since=since)
        return int(finished), (float(seconds) if seconds is not None else None)

    def fill_history(self, dsn: str, count: int) -> None:
        """``count`` jobs that succeeded days ago, inserted by SQL."""
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(QUERIES[f"{self.prefix}fill_history"], {"count": count})
