"""The peers' own virtualenv: Procrastinate, PgQueuer and django-tasks-db are installed there,
never in the project's environment, and the bench process never imports them.

Created on first use with ``python -m venv`` and pip; recreated when the
requirements below change (they are written into the venv as a marker).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from . import BenchError

REQUIREMENTS = (
    "procrastinate>=3,<4",
    "pgqueuer>=1,<2",
    "asyncpg",
    "psycopg[binary]",
    # django-tasks-db (run on request), with Django and django.tasks' backport.
    "django-tasks-db",
    "django-tasks",
)
DISTRIBUTIONS = ("procrastinate", "pgqueuer", "asyncpg", "psycopg", "django-tasks-db", "django")
_MARKER = "bench-requirements.json"


def python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure(venv: Path) -> Path:
    """The peers venv's python, after creating or updating the venv if needed."""
    marker = venv / _MARKER
    wanted = json.dumps(sorted(REQUIREMENTS))
    if python(venv).exists() and marker.exists() and marker.read_text() == wanted:
        return python(venv)
    print(f"installing the peers into {venv} ...", file=sys.stderr, flush=True)
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        [str(python(venv)), "-m", "pip", "install", "--quiet", *REQUIREMENTS],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BenchError(
                f"could not set up the peers' virtualenv ({' '.join(step)}):\n"
                + (done.stderr or done.stdout).strip()[-2000:]
            )
    marker.write_text(wanted)
    return python(venv)


def versions(venv: Path) -> dict[str, str]:
    """Installed versions of the peers (and their drivers), for the report."""
    code = (
        "import json, importlib.metadata as m; "
        f"print(json.dumps({{d: m.version(d) for d in {list(DISTRIBUTIONS)!r}}}))"
    )
    done = subprocess.run(
        [str(python(venv)), "-c", code], capture_output=True, text=True, check=True
    )
    result: dict[str, str] = json.loads(done.stdout)
    return result
