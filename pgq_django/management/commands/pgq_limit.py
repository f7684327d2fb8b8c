"""manage.py pgq_limit QUEUE [--max-running N] [--rate N]: limits across all workers."""

from __future__ import annotations

from pgq_django.management.verbs import VerbCommand


class Command(VerbCommand):
    verb = "limit"
