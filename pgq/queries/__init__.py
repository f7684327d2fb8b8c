"""Every SQL statement pgq runs, loaded once by name from the ``.sql`` files here.

A query starts at a ``-- name: <name>`` line and runs to the next one. Keeping
SQL in files makes it reviewable as SQL and keeps it out of f-strings.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import cast

from typing_extensions import LiteralString

_NAME_LINE = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def parse_queries(text: str) -> dict[str, LiteralString]:
    """Split one ``.sql`` file into its named queries."""
    parts = _NAME_LINE.split(text)
    queries: dict[str, LiteralString] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        # Files in this package are as literal as a string in the source.
        queries[name] = cast(LiteralString, body.strip())
    return queries


def _load() -> dict[str, LiteralString]:
    queries: dict[str, LiteralString] = {}
    for entry in sorted(resources.files(__name__).iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql"):
            for name, query in parse_queries(entry.read_text(encoding="utf-8")).items():
                if name in queries:
                    raise ValueError(f"query {name!r} is defined in two files")
                queries[name] = query
    return queries


QUERIES: dict[str, LiteralString] = _load()
