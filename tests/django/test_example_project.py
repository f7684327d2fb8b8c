"""``example_project/run.py --smoke``: the example site, its development server
and a worker, used over HTTP as a person would (form, admin retry), in real
subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from psycopg.conninfo import make_conninfo

from tests.conftest import ROOT

RUN = ROOT / "example_project" / "run.py"
pytestmark = pytest.mark.slow


def smoke(database_url: str | None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name in ("DATABASE_URL", "PGQ_DSN", "DJANGO_SETTINGS_MODULE"):
        env.pop(name, None)
    if database_url:
        env["DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, str(RUN), "--smoke"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_passed(result: subprocess.CompletedProcess[str]) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "smoke test passed" in result.stdout, output
    for line in (
        "make_report succeeded",
        "publish_report failed after 2 attempts",
        "retried from the admin",
        "publish_report succeeded",
    ):
        assert line in result.stdout, output
    assert "SIGTERM: stopping" in result.stderr  # the worker was stopped gracefully


def test_example_project__smoke_run_on_database_url(empty_dsn: str) -> None:
    # The session server's superuser is named "pgq": keep Django's tables out
    # of schema pgq, which "$user" would put first on the search_path.
    url = make_conninfo(empty_dsn, options="-c search_path=public")
    result = smoke(url)
    assert_passed(result)
    assert "database  DATABASE_URL" in result.stdout


@pytest.mark.skipif(
    bool(os.environ.get("PGQ_TEST_DSN")),
    reason="PGQ_TEST_DSN is set: the suite starts no PostgreSQL server of its own",
)
def test_example_project__smoke_run_starts_its_own_database() -> None:
    result = smoke(None)
    assert_passed(result)
    assert "throwaway PostgreSQL" in result.stdout
