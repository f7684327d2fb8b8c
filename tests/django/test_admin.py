"""The admin pages of the job queue, through Django's test client."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

import pgq
from pgq import store
from pgq.retry import Outcome
from pgq_django.admin_display import duration, status_counts
from pgq_django.models import Job
from tests.django.testapp import tasks

pytestmark = pytest.mark.django_db

JOBS = "/admin/pgq_django/job/"
FAILED = "/admin/pgq_django/failedjob/"
ERROR = (
    "ValueError: boom <script>alert(1)</script>\n\n"
    "Traceback (most recent call last):\n"
    '  File "tasks.py", line 3, in fail\n'
    "    raise ValueError(message)\n"
)


# Jobs in every state, put there the way a worker would (claim, then record).


def claim(app: pgq.App, job: pgq.Job, hostname: str = "host-1") -> uuid.UUID:
    worker_id = uuid.uuid4()
    app.execute(store.register_worker(worker_id, hostname, 4242, None, [job.task], 1, 60))
    claimed = app.execute(store.claim_jobs(worker_id, None, [job.task], 1))
    assert [row["id"] for row in claimed] == [job.id]
    return worker_id


def finish(app: pgq.App, job: pgq.Job, status: str, **values: Any) -> pgq.Job:
    worker_id = claim(app, job)
    outcome = Outcome(job.id, worker_id, 1, pgq.JobStatus(status), **values)
    assert app.execute(store.finish_jobs([outcome])) == {job.id}
    return job


def failed(app: pgq.App, message: str = "boom") -> pgq.Job:
    return finish(app, tasks.fail.delay(message), "failed", error=ERROR)


def succeeded(app: pgq.App) -> pgq.Job:
    # A higher priority than any other test job: the claim takes this one first.
    return finish(app, tasks.add.using(priority=100).delay(1, 2), "succeeded", result="3")


def cancelled(app: pgq.App) -> pgq.Job:
    job = tasks.add.delay(5, 5)
    app.cancel(job.id)
    return job


def status(job: pgq.Job) -> str:
    return str(Job.objects.get(pk=job.id).status)


# Clients: a superuser and staff users with only the permissions named. They
# log in with force_login: no password hashing, which takes most of a second.


@pytest.fixture
def admin_user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_superuser("admin", "admin@example.com", None)


@pytest.fixture
def admin_client(admin_user: Any) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture
def staff(django_user_model: Any) -> Callable[..., Client]:
    def make(*codenames: str) -> Client:
        user = django_user_model.objects.create_user(
            username=f"staff-{'-'.join(codenames) or 'none'}", password=None, is_staff=True
        )
        permissions = Permission.objects.filter(
            content_type__app_label="pgq_django", codename__in=codenames
        )
        assert permissions.count() == len(codenames)
        user.user_permissions.set(permissions)
        client = Client()
        client.force_login(user)
        return client

    return make


def listed(client: Client, url: str = JOBS, **params: str) -> list[int]:
    response = client.get(url, params)
    assert response.status_code == 200
    return [job.pk for job in response.context["cl"].result_list]


def run_action(client: Client, action: str, *jobs: pgq.Job, url: str = JOBS, **extra: str) -> Any:
    """Post an admin action on these jobs; the response of the page it leads to."""
    data = {"action": action, "_selected_action": [job.id for job in jobs], **extra}
    return client.post(url, data, follow=True)


def messages_of(response: Any) -> list[str]:
    """The messages the page shows (and so consumes)."""
    return [str(message) for message in response.context["messages"]]


def action_names(client: Client, url: str = JOBS) -> list[str]:
    form = client.get(url).context["action_form"]
    if form is None:
        return []
    return [name for name, _label in form.fields["action"].choices if name]


# The list.


def test_changelist__shows_task_queue_status_attempts_age_and_worker(
    admin_client: Client, app: pgq.App
) -> None:
    queued = tasks.add.delay(1, 2)
    failure = failed(app)
    running = tasks.send_email.delay("a@example.com")
    claim(app, running, hostname="web-7")

    response = admin_client.get(JOBS)

    assert response.status_code == 200
    assert [job.pk for job in response.context["cl"].result_list] == [
        running.id,
        failure.id,
        queued.id,
    ]
    html = response.content.decode()
    assert "tests.django.testapp.tasks.send_email" in html
    assert '<span class="pgq-status pgq-status-failed">Failed</span>' in html
    assert "1 / 1" in html  # attempts of the failed job (max_attempts=1)
    assert "web-7 pid 4242" in html  # the live worker holding the running job
    assert "0\xa0minutes" in html  # age
    assert "Add job" not in html


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status__exact": "failed"}, {"failure"}),
        ({"status__exact": "queued"}, {"queued", "email"}),
        ({"queue": "emails"}, {"email"}),
        ({"task": "tests.django.testapp.tasks.add"}, {"queued"}),
        ({"queue": "default", "status__exact": "queued"}, {"queued"}),
    ],
)
def test_filters__by_status_queue_and_task(
    admin_client: Client, app: pgq.App, params: dict[str, str], expected: set[str]
) -> None:
    jobs = {
        "queued": tasks.add.delay(1, 2),
        "failure": failed(app),
        "email": tasks.send_email.delay("a@example.com"),
    }
    wanted = {jobs[name].id for name in expected}
    assert set(listed(admin_client, **params)) == wanted


def test_filters__by_creation_date(admin_client: Client) -> None:
    job = tasks.add.delay(1, 2)
    changelist = admin_client.get(JOBS).context["cl"]
    assert [str(spec.title) for spec in changelist.filter_specs] == [
        "status",
        "queue",
        "task",
        "created at",
    ]
    links = {
        str(choice["display"]): choice["query_string"]
        for choice in changelist.filter_specs[-1].choices(changelist)
    }
    assert listed(admin_client, url=JOBS + links["Today"]) == [job.id]
    assert listed(admin_client, url=JOBS + links["Past 7 days"]) == [job.id]
    now = timezone.now()
    before = {
        "created_at__gte": str(now - timedelta(days=30)),
        "created_at__lt": str(now - timedelta(days=29)),
    }
    assert listed(admin_client, **before) == []


def test_search__by_id_task_and_arguments(admin_client: Client) -> None:
    email = tasks.send_email.delay("alice@example.com", subject="quarterly-report")
    other = tasks.add.delay(40, 2)
    assert listed(admin_client, q=str(email.id)) == [email.id]
    assert listed(admin_client, q=str(other.id)) == [other.id]
    assert listed(admin_client, q="send_email") == [email.id]
    assert listed(admin_client, q="ALICE@example") == [email.id]  # in args, any case
    assert listed(admin_client, q="quarterly") == [email.id]  # in kwargs
    assert listed(admin_client, q="send_email alice") == [email.id]  # every word must match
    assert listed(admin_client, q="nobody-has-this") == []


@pytest.mark.parametrize(
    "term",
    [
        "'; DROP TABLE pgq.jobs; --",
        "' OR '1'='1",
        "1 OR 1=1",
        '") OR true --',
        "%",
        "_",
        "\\",
        '{"a": 1}',
        "$1",
        "%(id)s",
        "\x00",
    ],
)
def test_search__injection_looking_terms_are_plain_text(admin_client: Client, term: str) -> None:
    plain = tasks.add.delay(1, 2)
    literal = tasks.send_email.delay("100% sure_" + term.replace("\x00", ""))  # NUL: refused
    response = admin_client.get(JOBS, {"q": term})
    assert response.status_code == 200
    found = [job.pk for job in response.context["cl"].result_list]
    if term == "\x00":  # Django drops NUL from the search: no search at all
        assert sorted(found) == [plain.id, literal.id]
        return
    assert set(found) <= {literal.id}
    if '"' not in term:  # arguments are searched in their JSON text, where '"' is escaped
        assert found == [literal.id]
    assert Job.objects.count() == 2


# The detail page.


def test_detail__shows_pretty_arguments_error_traceback_and_timings(
    admin_client: Client, app: pgq.App
) -> None:
    job = finish(
        app,
        tasks.send_email.delay("a@example.com", subject="<b>hi</b>"),
        "failed",
        error=ERROR,
    )
    response = admin_client.get(f"{JOBS}{job.id}/change/")
    assert response.status_code == 200
    html = response.content.decode()
    assert '<pre class="pgq-json">[\n  &quot;a@example.com&quot;\n]</pre>' in html
    assert (
        '<pre class="pgq-json">{\n  &quot;subject&quot;: &quot;&lt;b&gt;hi&lt;/b&gt;&quot;\n}'
        in html
    )
    assert '<pre class="pgq-traceback">ValueError: boom &lt;script&gt;' in html
    assert "Traceback (most recent call last):\n  File &quot;tasks.py&quot;" in html
    assert "<script>alert(1)</script>" not in html
    for label in (
        "Created at",
        "Run at (not before)",
        "Started at",
        "Finished at",
        "Waited",
        "Ran for",
    ):
        assert f"{label}:</label>" in html
    timestamps = re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC", html)
    assert len(timestamps) == 4  # created, run at, started, finished: to the millisecond
    assert "Result:</label>" not in html  # a failed job has none


def test_detail__result_of_a_succeeded_job(admin_client: Client, app: pgq.App) -> None:
    job = finish(app, tasks.add.delay(1, 2), "succeeded", result='{"total": 3, "items": [1, 2]}')
    html = admin_client.get(f"{JOBS}{job.id}/change/").content.decode()
    assert '<pre class="pgq-json">{\n  &quot;items&quot;: [\n    1,\n    2\n  ],' in html
    assert "Error and traceback:</label>" not in html


def test_detail__is_read_only(admin_client: Client) -> None:
    job = tasks.add.delay(1, 2)
    response = admin_client.get(f"{JOBS}{job.id}/change/")
    html = response.content.decode()
    assert 'name="task"' not in html
    assert 'name="_save"' not in html
    assert admin_client.post(f"{JOBS}{job.id}/change/", {"task": "x"}).status_code == 403
    assert admin_client.get(f"{JOBS}add/").status_code == 403
    assert Job.objects.get().task == "tests.django.testapp.tasks.add"


# Bulk actions.


def test_retry_action__requeues_failed_and_cancelled_and_reports_the_rest(
    admin_client: Client, app: pgq.App
) -> None:
    failure, gone, queued = failed(app), cancelled(app), tasks.add.delay(1, 2)

    response = run_action(admin_client, "retry_jobs", failure, gone, queued)

    assert response.redirect_chain == [(JOBS, 302)]
    assert messages_of(response) == [
        "2 jobs queued again.",
        "1 job skipped: only failed or cancelled jobs can be retried (1 queued).",
    ]
    assert (status(failure), status(gone), status(queued)) == ("queued", "queued", "queued")
    assert Job.objects.get(pk=failure.id).attempts == 0
    history = LogEntry.objects.filter(object_id=str(failure.id))
    assert [entry.change_message for entry in history] == ["Retried."]


def test_cancel_action__cancels_queued_asks_running_and_skips_finished(
    admin_client: Client, app: pgq.App
) -> None:
    queued = tasks.add.delay(1, 2)
    running = tasks.send_email.delay("a@example.com")
    claim(app, running)
    done = succeeded(app)

    response = run_action(admin_client, "cancel_jobs", queued, running, done)

    assert messages_of(response) == [
        "1 job cancelled.",
        "1 running job asked to stop: it is interrupted and ends as cancelled, "
        "or as usual if it finishes first.",
        "1 job skipped: it had already finished (1 succeeded).",
    ]
    assert (status(queued), status(running), status(done)) == ("cancelled", "running", "succeeded")
    assert Job.objects.get(pk=running.id).cancel_requested


def test_delete_action__confirms_then_deletes_only_finished_jobs(
    admin_client: Client, app: pgq.App
) -> None:
    done, failure, queued = succeeded(app), failed(app), tasks.add.delay(1, 2)

    confirm = run_action(admin_client, "delete_selected", done, failure, queued)

    assert confirm.status_code == 200
    assert "Are you sure you want to delete the selected jobs?" in confirm.content.decode()
    assert sorted(job.pk for job in confirm.context["queryset"]) == [done.id, failure.id]
    assert messages_of(confirm) == [
        "1 queued or running job left out: only finished jobs are deleted (cancel it first)."
    ]
    assert Job.objects.count() == 3  # nothing deleted before confirming

    deleted = run_action(admin_client, "delete_selected", done, failure, post="yes")

    assert deleted.redirect_chain == [(JOBS, 302)]
    assert messages_of(deleted) == ["Successfully deleted 2 jobs."]
    assert list(Job.objects.values_list("pk", flat=True)) == [queued.id]


def test_delete_action__never_deletes_a_job_that_is_no_longer_finished(
    admin_client: Client, app: pgq.App
) -> None:
    failure = failed(app)
    run_action(admin_client, "delete_selected", failure)  # the confirmation page
    app.retry(failure.id)  # meanwhile, someone retries it

    response = run_action(admin_client, "delete_selected", failure, post="yes")

    assert messages_of(response) == [
        "1 queued or running job left out: only finished jobs are deleted (cancel it first).",
        "No job deleted.",
    ]
    assert status(failure) == "queued"


def test_delete_page_of_an_unfinished_job__is_forbidden(admin_client: Client, app: pgq.App) -> None:
    running = tasks.add.delay(1, 2)
    claim(app, running)
    assert admin_client.get(f"{JOBS}{running.id}/delete/").status_code == 403
    assert admin_client.post(f"{JOBS}{running.id}/delete/", {"post": "yes"}).status_code == 403
    done = succeeded(app)
    assert admin_client.post(f"{JOBS}{done.id}/delete/", {"post": "yes"}).status_code == 302
    assert list(Job.objects.values_list("pk", flat=True)) == [running.id]


# Permissions.


def test_superuser__has_every_action(admin_client: Client) -> None:
    assert action_names(admin_client) == ["retry_jobs", "cancel_jobs", "delete_selected"]
    assert action_names(admin_client, FAILED) == ["retry_jobs", "delete_selected"]


def test_view_only_staff__sees_everything_but_cannot_act(
    staff: Callable[..., Client], app: pgq.App
) -> None:
    client = staff("view_job")
    failure, queued = failed(app), tasks.add.delay(1, 2)

    assert set(listed(client)) == {failure.id, queued.id}
    assert listed(client, FAILED) == [failure.id]
    assert action_names(client) == []
    page = client.get(f"{JOBS}{failure.id}/change/").content.decode()
    assert "ValueError: boom" in page
    assert 'data-tool-name="retry_this"' not in page

    for action, job in [
        ("retry_jobs", failure),
        ("cancel_jobs", queued),
        ("delete_selected", failure),
    ]:
        response = run_action(client, action, job, post="yes")
        assert response.status_code == 200  # the list again: it has no action to run
        assert messages_of(response) == []
    assert client.post(f"{JOBS}{failure.id}/actions/retry_this/").status_code == 403
    assert client.post(f"{JOBS}{queued.id}/actions/cancel_this/").status_code == 403
    assert client.post(f"{JOBS}{failure.id}/delete/", {"post": "yes"}).status_code == 403
    assert (status(failure), status(queued)) == ("failed", "queued")


def test_staff_with_retry_permission__can_retry_only(
    staff: Callable[..., Client], app: pgq.App
) -> None:
    client = staff("view_job", "retry_job")
    failure, queued = failed(app), tasks.add.delay(1, 2)

    assert action_names(client) == ["retry_jobs"]
    assert messages_of(run_action(client, "cancel_jobs", queued)) == ["No action selected."]
    response = run_action(client, "delete_selected", failure, post="yes")
    assert messages_of(response) == ["No action selected."]
    assert client.post(f"{JOBS}{queued.id}/actions/cancel_this/").status_code == 403
    assert (status(failure), status(queued)) == ("failed", "queued")

    response = run_action(client, "retry_jobs", failure)

    assert messages_of(response) == ["1 job queued again."]
    assert status(failure) == "queued"


def test_staff_without_view_permission__is_refused(staff: Callable[..., Client]) -> None:
    client = staff()
    job = tasks.add.delay(1, 2)
    assert client.get(JOBS).status_code == 403
    assert client.get(FAILED).status_code == 403
    assert client.get(f"{JOBS}{job.id}/change/").status_code == 403
    assert "Failed jobs" not in client.get("/admin/").content.decode()


# Per-job buttons.


def test_detail_buttons__follow_status_and_permissions(
    admin_client: Client, staff: Callable[..., Client], app: pgq.App
) -> None:
    failure, queued, done = failed(app), tasks.add.delay(1, 2), succeeded(app)

    def buttons(client: Client, job: pgq.Job) -> list[str]:
        html = client.get(f"{JOBS}{job.id}/change/").content.decode()
        return re.findall(r'data-tool-name="(\w+)"', html)

    assert buttons(admin_client, failure) == ["retry_this"]
    assert buttons(admin_client, queued) == ["cancel_this"]
    assert buttons(admin_client, done) == []
    cancel_only = staff("view_job", "cancel_job")
    assert buttons(cancel_only, failure) == []
    assert buttons(cancel_only, queued) == ["cancel_this"]


def test_detail_retry_button__posts_with_csrf_and_returns_to_the_job(
    admin_user: Any, app: pgq.App
) -> None:
    failure = failed(app)
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    page = client.get(f"{FAILED}{failure.id}/change/").content.decode()
    action = re.search(r'<form method="post" action="([^"]+)">', page)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert action is not None and token is not None
    url = action.group(1)
    assert url == f"{FAILED}{failure.id}/actions/retry_this/"

    assert client.get(url).status_code == 405  # a link or a prefetch changes nothing
    assert client.post(url).status_code == 403  # no CSRF token
    assert status(failure) == "failed"

    response = client.post(url, {"csrfmiddlewaretoken": token.group(1)}, follow=True)

    assert response.redirect_chain == [(f"{JOBS}{failure.id}/change/", 302)]  # not failed now
    assert messages_of(response) == ["1 job queued again."]
    assert status(failure) == "queued"


def test_detail_cancel_button__cancels_a_queued_job(admin_client: Client) -> None:
    queued = tasks.add.delay(1, 2)
    response = admin_client.post(f"{JOBS}{queued.id}/actions/cancel_this/", follow=True)
    assert response.redirect_chain == [(f"{JOBS}{queued.id}/change/", 302)]
    assert messages_of(response) == ["1 job cancelled."]
    assert status(queued) == "cancelled"


# Counts, failed jobs, workers.


def test_counts_block__per_queue_and_status_from_one_query(
    admin_client: Client, app: pgq.App, django_assert_num_queries: Any
) -> None:
    tasks.add.delay(1, 2)
    failed(app)
    tasks.send_email.delay("a@example.com")
    tasks.send_email.delay("b@example.com")

    with django_assert_num_queries(1):
        counts = status_counts(JOBS)

    assert [row.queue for row in counts.rows] == ["default", "emails"]
    assert counts.count("default", "queued") == 1
    assert counts.count("default", "failed") == 1
    assert counts.count("emails", "queued") == 2
    assert counts.count("emails", "running") == 0
    assert [(cell.status, cell.count) for cell in counts.totals] == [
        ("queued", 3),
        ("running", 0),
        ("succeeded", 0),
        ("failed", 1),
        ("cancelled", 0),
    ]
    assert counts.total == 4
    html = admin_client.get(JOBS).content.decode()
    assert 'id="pgq-counts"' in html
    assert f'<a href="{JOBS}?queue=emails&amp;status__exact=queued">2</a>' in html
    assert listed(admin_client, queue="emails", status__exact="queued") != []


def test_admin_index__links_to_failed_jobs(
    admin_client: Client, staff: Callable[..., Client], app: pgq.App
) -> None:
    failure = failed(app)
    tasks.add.delay(1, 2)
    for client in (admin_client, staff("view_job")):
        index = client.get("/admin/").content.decode()
        assert f'<a href="{FAILED}">Failed jobs</a>' in index
        response = client.get(FAILED)
        assert [job.pk for job in response.context["cl"].result_list] == [failure.id]
        assert "ValueError: boom &lt;script&gt;" in response.content.decode()  # the error column


def test_failed_jobs__retry_action_takes_them_off_the_list(
    admin_client: Client, app: pgq.App
) -> None:
    failure = failed(app)
    response = run_action(admin_client, "retry_jobs", failure, url=FAILED)
    assert messages_of(response) == ["1 job queued again."]
    assert listed(admin_client, FAILED) == []
    assert listed(admin_client, status__exact="queued") == [failure.id]


def test_workers__are_listed_read_only(admin_client: Client, app: pgq.App) -> None:
    claim(app, tasks.add.delay(1, 2), hostname="worker-host")
    response = admin_client.get("/admin/pgq_django/worker/")
    assert response.status_code == 200
    assert "worker-host" in response.content.decode()
    assert response.context["action_form"] is None  # nothing to do to a worker's row


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.0004, "0 ms"),
        (0.153, "153 ms"),
        (2.46, "2.5 s"),
        (192, "3 min 12 s"),
        (7500, "2 h 5 min"),
    ],
)
def test_duration__reads_at_a_glance(seconds: float, shown: str) -> None:
    assert duration(timedelta(seconds=seconds)) == shown
