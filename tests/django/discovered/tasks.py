"""Tasks that only the worker's autodiscovery imports: no test imports this
module, so a job of these tasks runs only if discovery found it."""

from __future__ import annotations

from pgq_django import task


@task(name="discovered.shout")
def shout(text: str) -> str:
    return text.upper()
