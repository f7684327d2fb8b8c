"""``run.py --smoke``: use the running site as a person would, over HTTP, and
watch the jobs in the database. Django is already set up by run.py."""

from __future__ import annotations

import http.cookiejar
import re
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlencode
from urllib.request import HTTPCookieProcessor, build_opener

T = TypeVar("T")
TIMEOUT = 60.0
CSRF_TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


class SmokeFailure(Exception):
    pass


class Session:
    """A tiny browser: cookies, CSRF tokens from the last page, redirects followed."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.opener = build_opener(HTTPCookieProcessor(http.cookiejar.CookieJar()))
        self.page = ""

    def get(self, path: str) -> str:
        with self.opener.open(self.base_url + path, timeout=30) as response:
            self.page = response.read().decode()
        return self.page

    def post(self, path: str, data: dict[str, Any]) -> str:
        """Submit a form of the last page fetched (with its CSRF token)."""
        token = CSRF_TOKEN.search(self.page)
        if token is None:
            raise SmokeFailure(f"no CSRF token on the page before POST {path}")
        body = urlencode({"csrfmiddlewaretoken": token.group(1), **data}, doseq=True).encode()
        with self.opener.open(self.base_url + path, data=body, timeout=30) as response:
            self.page = response.read().decode()
        return self.page


def wait_for(what: str, condition: Callable[[], T | None], timeout: float = TIMEOUT) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SmokeFailure(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def step(text: str) -> None:
    print(f"smoke: {text}", flush=True)


def run(base_url: str, username: str, password: str) -> int:
    try:
        check(Session(base_url), username, password)
    except SmokeFailure as exc:
        print(f"smoke test FAILED: {exc}", flush=True)
        return 1
    print("smoke test passed", flush=True)
    return 0


def check(site: Session, username: str, password: str) -> None:
    from reports.models import Report
    from reports.tasks import make_report, publish_report

    from pgq_django.models import Job

    title = f"Smoke test {uuid.uuid4().hex[:6]}"
    site.get("/")
    page = site.post("/", {"title": title, "numbers": "3 1 4 1 5 9 2 6"})
    if title not in page or "is summarising it" not in page:
        raise SmokeFailure("the form did not save the report")
    report = Report.objects.get(title=title)
    step(f"form submitted: report {report.pk}")

    def job_in(task_name: str, *statuses: str) -> Job | None:
        job = Job.objects.filter(task=task_name, args=[report.pk]).first()
        return job if job is not None and job.status in statuses else None

    summary_job = wait_for("make_report to succeed", lambda: job_in(make_report.name, "succeeded"))
    summary = Report.objects.get(pk=report.pk).summary
    if summary != summary_job.result or summary["sum"] != 31:
        raise SmokeFailure(f"unexpected summary {summary!r} (job result {summary_job.result!r})")
    step(f"job {summary_job.id} make_report succeeded: {summary}")

    failed = wait_for("publish_report to fail", lambda: job_in(publish_report.name, "failed"))
    step(f"job {failed.id} publish_report failed after {failed.attempts} attempts")

    site.get("/admin/login/")
    site.post("/admin/login/?next=/admin/", {"username": username, "password": password})
    if "Failed jobs" not in site.page:
        raise SmokeFailure("logging into the admin failed, or it has no 'Failed jobs' link")
    site.get("/admin/pgq_django/failedjob/")
    if f'value="{failed.id}"' not in site.page:
        raise SmokeFailure(f"job {failed.id} is not in the admin's failed jobs")
    page = site.post(
        "/admin/pgq_django/failedjob/",
        {"action": "retry_jobs", "_selected_action": failed.id, "index": "0"},
    )
    if "1 job queued again." not in page:
        raise SmokeFailure("the admin's retry action did not report the job queued again")
    step(f"job {failed.id} retried from the admin")

    published = wait_for(
        "the retried publish_report to succeed", lambda: job_in(publish_report.name, "succeeded")
    )
    step(f"job {published.id} publish_report succeeded: {published.result!r}")
