"""manage.py pgq_retry ID...: put failed or cancelled jobs back in the queue."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from pgq_django.management.verbs import VerbCommand


class Command(VerbCommand):
    verb = "retry"
    help_texts: ClassVar[Mapping[str, str]] = {"job_ids": "Ids of failed or cancelled jobs."}
