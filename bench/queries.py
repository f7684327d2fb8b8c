"""The benchmark's own SQL, loaded by name from ``queries.sql`` like pgq's."""

from __future__ import annotations

from pathlib import Path

from typing_extensions import LiteralString

from pgq.queries import parse_queries

QUERIES: dict[str, LiteralString] = parse_queries(
    Path(__file__).with_name("queries.sql").read_text(encoding="utf-8")
)
