"""Checks on user-supplied options, each failing with one clear line."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from .exceptions import InvalidOptions

QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")
PRIORITY_MIN, PRIORITY_MAX = -32768, 32767
MAX_TASK_NAME = 200


def queue_name(value: Any) -> str:
    if not isinstance(value, str) or not QUEUE_NAME.fullmatch(value):
        raise InvalidOptions(
            f"invalid queue name {value!r}: use 1-100 letters, digits, '_', '.', ':' or '-',"
            " starting with a letter or digit"
        )
    return value


def task_name(value: Any) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_TASK_NAME:
        raise InvalidOptions(f"invalid task name {value!r}: use 1-{MAX_TASK_NAME} characters")
    return value


def priority(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidOptions(f"priority must be an integer, got {value!r}")
    if not PRIORITY_MIN <= value <= PRIORITY_MAX:
        raise InvalidOptions(f"priority {value} is out of range [{PRIORITY_MIN}, {PRIORITY_MAX}]")
    return value


def max_attempts(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidOptions(f"max_attempts must be an integer >= 1, got {value!r}")
    return value


def timeout(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise InvalidOptions(f"timeout must be a positive number of seconds, got {value!r}")
    return float(value)


def run_after(value: Any) -> timedelta | datetime | None:
    """A delay (timedelta or seconds, >= 0) or a timezone-aware datetime."""
    if value is None or isinstance(value, datetime):
        if isinstance(value, datetime) and value.utcoffset() is None:
            raise InvalidOptions(
                f"run_after datetime {value.isoformat()} has no timezone; "
                "use an aware datetime such as datetime.now(timezone.utc)"
            )
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = timedelta(seconds=value)
    if not isinstance(value, timedelta):
        raise InvalidOptions(
            f"run_after must be a timedelta, seconds or an aware datetime, got {value!r}"
        )
    if value < timedelta(0):
        raise InvalidOptions(f"run_after must not be negative, got {value}")
    return value


def unique_key(value: Any) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise InvalidOptions(f"unique_key must be a non-empty string, got {value!r}")
    return value
