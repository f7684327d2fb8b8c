"""manage.py pgq_worker --isolation process: job processes set Django up
themselves (pgq_django.isolated) and run ORM tasks on the project's database."""

from __future__ import annotations

import pytest

import pgq
from tests.django.conftest import manage
from tests.django.testapp import tasks
from tests.django.testapp.models import Note


@pytest.mark.slow
def test_manage_py_worker_with_process_isolation__runs_orm_tasks_in_job_processes(
    committed_db: None, app: pgq.App
) -> None:
    job = tasks.create_note.delay("made in a job process")
    done = manage(app.dsn, "pgq_worker", "--burst", "--isolation", "process")
    assert done.returncode == 0, done.stderr
    assert "job process pid=" in done.stderr  # the job ran in a child of the worker
    job.refresh()
    assert job.status is pgq.JobStatus.SUCCEEDED, job.last_error
    note = Note.objects.get()
    assert (note.pk, note.text) == (job.result, "made in a job process")


def test_worker_app__names_the_module_job_processes_import() -> None:
    from pgq_django.worker import ISOLATED_APP, worker_app

    assert worker_app().import_spec == ISOLATED_APP == "pgq_django.isolated:app"
