"""manage.py pgq_jobs: list jobs, newest first (also see the admin)."""

from __future__ import annotations

from pgq_django.management.verbs import VerbCommand


class Command(VerbCommand):
    verb = "jobs"
