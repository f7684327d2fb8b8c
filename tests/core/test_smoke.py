from __future__ import annotations

import pgq
from tests import tasks


def test_delay_then_burst_worker__runs_the_job(app: pgq.App) -> None:
    job = tasks.add.delay(2, 3)
    app.run_worker(burst=True)
    assert job.refresh().status is pgq.JobStatus.SUCCEEDED
    assert job.result == 5
