"""manage.py pgq_status: jobs per queue and status, the oldest waiting job, live workers."""

from __future__ import annotations

from pgq_django.management.verbs import VerbCommand


class Command(VerbCommand):
    verb = "status"
