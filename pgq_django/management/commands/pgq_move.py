"""manage.py pgq_move --from A --to B [--task T] [ID...]: move waiting jobs."""

from __future__ import annotations

from pgq_django.management.verbs import VerbCommand


class Command(VerbCommand):
    verb = "move"
