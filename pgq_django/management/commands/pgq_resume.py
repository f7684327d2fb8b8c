"""manage.py pgq_resume QUEUE: workers claim from QUEUE again."""

from __future__ import annotations

from pgq_django.management.verbs import VerbCommand


class Command(VerbCommand):
    verb = "resume"
