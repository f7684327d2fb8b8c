"""manage.py pgq_cancel ID...: cancel queued jobs, ask running ones to stop."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from pgq_django.management.verbs import VerbCommand


class Command(VerbCommand):
    verb = "cancel"
    help_texts: ClassVar[Mapping[str, str]] = {"job_ids": "Ids of queued or running jobs."}
