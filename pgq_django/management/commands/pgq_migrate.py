"""manage.py pgq_migrate: apply pgq's SQL migrations directly (what `manage.py
migrate` does through pgq_django's migrations; for repairs and scripts)."""

from __future__ import annotations

from pgq_django.management.verbs import VerbCommand


class Command(VerbCommand):
    verb = "migrate"
