"""The admin's bulk actions need a CSRF token as well as a permission, and the
search box treats format and placeholder syntax as text. (Permissions, the
per-job buttons' CSRF check and most injection-looking search terms are in
test_admin.py.)"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import connection
from django.test import Client

import pgq
from pgq_django.models import Job
from tests.django.testapp import tasks

pytestmark = pytest.mark.django_db

JOBS = "/admin/pgq_django/job/"


@pytest.fixture
def csrf_client(django_user_model: Any) -> Client:
    """A logged-in superuser whose posts are CSRF-checked, as a browser's are."""
    user = django_user_model.objects.create_superuser("admin", "admin@example.com", None)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def jobs_table() -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM pgq.jobs ORDER BY id")
        return list(cursor.fetchall())


def csrf_token(client: Client) -> str:
    page = client.get(JOBS).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token is not None
    return token.group(1)


@pytest.mark.parametrize(
    ("action", "cancelled_first", "after"),
    [("retry_jobs", True, "queued"), ("cancel_jobs", False, "cancelled")],
)
def test_bulk_action__without_a_csrf_token_is_forbidden_and_changes_nothing(
    csrf_client: Client, app: pgq.App, action: str, cancelled_first: bool, after: str
) -> None:
    job = tasks.add.delay(1, 2)
    if cancelled_first:
        app.cancel(job.id)  # retryable
    data = {"action": action, "_selected_action": [job.id], "index": 0}
    before = jobs_table()

    refused = csrf_client.post(JOBS, data)

    assert refused.status_code == 403
    assert b"CSRF" in refused.content
    assert jobs_table() == before

    accepted = csrf_client.post(JOBS, {**data, "csrfmiddlewaretoken": csrf_token(csrf_client)})

    assert accepted.status_code == 302  # the same post with the token is carried out
    assert Job.objects.get(pk=job.id).status == after


@pytest.mark.parametrize("term", ["%s", "{0}", "{x}}", "%(x)s", "\\'; --", '\\"', "$1::text"])
def test_search__placeholder_and_format_syntax_is_plain_text(
    csrf_client: Client, term: str
) -> None:
    match = tasks.send_email.delay(f"x{term}y")
    tasks.add.delay(1, 2)
    before = jobs_table()

    response = csrf_client.get(JOBS, {"q": term})

    assert response.status_code == 200
    found = [job.pk for job in response.context["cl"].result_list]
    if '"' not in term and "\\" not in term:  # arguments are searched as JSON text
        assert found == [match.id]
    assert set(found) <= {match.id}
    assert jobs_table() == before
