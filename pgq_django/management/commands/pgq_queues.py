"""manage.py pgq_queues: queues with settings or live jobs."""

from __future__ import annotations

from pgq_django.management.verbs import VerbCommand


class Command(VerbCommand):
    verb = "queues"
