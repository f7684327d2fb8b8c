"""manage.py pgq_pause QUEUE: workers stop claiming from QUEUE; running jobs finish."""

from __future__ import annotations

from pgq_django.management.verbs import VerbCommand


class Command(VerbCommand):
    verb = "pause"
