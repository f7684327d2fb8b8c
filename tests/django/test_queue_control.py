"""Queue control through manage.py, and progress in the admin."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

import pgq
from pgq import store
from pgq_django.models import Job
from tests.django.test_admin import JOBS, claim
from tests.django.testapp import tasks

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_commands__pause_limit_list_move_resume() -> None:
    job = tasks.add.delay(1, 2)
    assert run("pgq_pause", "default") == "paused queue default\n"
    assert run("pgq_limit", "default", "--max-running", "2", "--rate", "none") == (
        "queue default: max_running=2 rate=none/s\n"
    )
    listed = run("pgq_queues").splitlines()
    assert listed[1].split() == ["default", "paused", "2", "none", "1", "0"]
    assert run("pgq_move", "--from", "default", "--to", "other") == (
        "moved 1 job(s) from default to other\n"
    )
    assert Job.objects.get(pk=job.id).queue == "other"
    assert run("pgq_resume", "default") == "resumed queue default\n"
    with pytest.raises(CommandError, match="invalid queue name") as raised:
        run("pgq_pause", "no spaces")
    assert raised.value.returncode == 1
    with pytest.raises(CommandError, match="pass --max-running") as raised:
        run("pgq_limit", "default")
    assert raised.value.returncode == 2


def test_admin__list_and_detail_show_progress(admin_client: Client, app: pgq.App) -> None:
    job = tasks.add.delay(1, 2)
    worker_id = claim(app, job)
    assert app.execute(store.set_job_progress(job.id, worker_id, 1, 40, 200, "resizing"))
    page = admin_client.get(f"{JOBS}{job.id}/change/").content.decode()
    assert "40/200 (20%) resizing" in page
    assert "40/200 (20%) resizing" in admin_client.get(JOBS).content.decode()
