"""manage.py pgq_prune: delete old finished jobs now, by PGQ["RETENTION"] or --older-than."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pgq_django.management.verbs import VerbCommand


class Command(VerbCommand):
    verb = "prune"
    # The project's App, hence PGQ["RETENTION"] when --older-than is not given.
    fixed: ClassVar[Mapping[str, Any]] = {"app_spec": "pgq_django:app"}
