"""The argument check that turns "Object of type User is not JSON serializable"
into "pass the primary key": registered with pgq by the AppConfig."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db.models import Model, QuerySet

from pgq.exceptions import SerializationError

# Deep enough for {"users": [user]}, shallow enough to stay cheap on big lists.
_MAX_DEPTH = 3


def reject_model_instances(label: str, value: Any) -> None:
    """Raise ``SerializationError`` for a model instance or a QuerySet, saying
    what to pass instead (a job runs later, against the row as it is then)."""
    found = _find(value, _MAX_DEPTH)
    if found is None:
        return
    where = "is" if found is value else "contains"
    if isinstance(found, Model):
        raise SerializationError(
            f"{label} {where} a {found._meta.label} instance; pass its primary key "
            f"({found.pk!r}) and load the object in the task"
        )
    raise SerializationError(
        f"{label} {where} a QuerySet of {found.model._meta.label}; pass a list of primary "
        "keys, e.g. list(queryset.values_list('pk', flat=True))"
    )


def _find(value: Any, depth: int) -> Model | QuerySet[Any] | None:
    if isinstance(value, (Model, QuerySet)):
        return value
    if depth == 0 or isinstance(value, (str, bytes, int, float, bool)) or value is None:
        return None
    if isinstance(value, Mapping):
        items: Any = value.values()
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = value
    else:
        return None
    for item in items:
        found = _find(item, depth - 1)
        if found is not None:
            return found
    return None
