"""The admin in a real headless Chromium (Playwright): log in, open the failed
jobs, retry one with the list's action, see it queued again.

Needs the ``playwright`` package and a Chromium binary (Debian's ``chromium``
at /usr/bin/chromium, or ``PGQ_CHROMIUM=/path/to/chrome``); Playwright's own
browser download is not used. Without either the test is skipped, saying which.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from pgq_django.models import Job
from tests.django.testapp import tasks

CHROMIUM = Path(os.environ.get("PGQ_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "correct horse battery staple"

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the browser test needs `pip install playwright`"
)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"no Chromium at {CHROMIUM} (apt-get install chromium, or set PGQ_CHROMIUM)",
    ),
]


@contextmanager
def chromium_page() -> Iterator[Any]:
    """A page of a fresh headless Chromium. While it is open this thread runs
    Playwright's event loop, so Django refuses ORM queries here: query the
    database before or after, not inside."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(20_000)
            yield page
        finally:
            browser.close()


@pytest.fixture
def failed_job(committed_db: None, django_user_model: Any, run_burst: Callable[..., None]) -> int:
    """An admin user, and a job that a real worker ran and that failed."""
    django_user_model.objects.create_superuser("operator", "operator@example.com", PASSWORD)
    job = tasks.fail.delay("disk full on the report server")
    run_burst()
    assert Job.objects.get(pk=job.id).status == "failed"
    return job.id


def test_browser__operator_retries_a_failed_job(live_server: Any, failed_job: int) -> None:
    expect = sync_api.expect
    with chromium_page() as page:
        page.goto(f"{live_server.url}/admin/")
        page.fill("#id_username", "operator")
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")

        page.get_by_role("link", name="Failed jobs").click()
        row = page.locator("#result_list tbody tr", has_text="disk full on the report server")
        expect(row).to_have_count(1)
        row.locator("input.action-select").check()
        page.select_option("select[name=action]", "retry_jobs")
        page.click(".actions button[name=index]")  # "Go" (Django 5.2) / "Run" (6.1)

        expect(page.locator("ul.messagelist")).to_contain_text("1 job queued again.")
        expect(page.locator("#result_list")).to_have_count(0)  # no failed job left
        page.get_by_role("link", name="Jobs", exact=True).click()
        row = page.locator("#result_list tbody tr", has_text="tests.django.testapp.tasks.fail")
        expect(row.locator(".pgq-status")).to_have_text("Queued")
        row.get_by_role("link", name=str(failed_job), exact=True).click()
        expect(page.locator(".field-status_badge .readonly")).to_have_text("Queued")
        expect(page.locator(".field-attempts_display .readonly")).to_have_text("0 / 1")

    job = Job.objects.get(pk=failed_job)
    assert (job.status, job.attempts, job.finished_at) == ("queued", 0, None)
