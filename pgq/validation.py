"""Checks on user-supplied options, each failing with one clear line."""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from .exceptions import InvalidOptions

QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")
PRIORITY_MIN, PRIORITY_MAX = -32768, 32767
MAX_ATTEMPTS_MAX = 2**31 - 1  # the column is a PostgreSQL integer
MAX_TASK_NAME = 200
# Unique keys live in a btree index, whose entries must stay well under 2,704 bytes.
MAX_UNIQUE_KEY_BYTES = 1000
# Past this a delay is a unit mistake (milliseconds given as seconds), not a plan.
MAX_DELAY = timedelta(days=365_000)


def _text(value: str, what: str) -> str:
    """Text PostgreSQL can store: no NUL character, valid Unicode."""
    if "\x00" in value:
        raise InvalidOptions(f"invalid {what} {value!r}: contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidOptions(
            f"invalid {what} {value!r}: contains a lone surrogate, which is not valid Unicode"
        ) from None
    return value


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
    return _text(value, "task name")


def priority(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidOptions(f"priority must be an integer, got {value!r}")
    if not PRIORITY_MIN <= value <= PRIORITY_MAX:
        raise InvalidOptions(f"priority {value} is out of range [{PRIORITY_MIN}, {PRIORITY_MAX}]")
    return value


def max_attempts(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidOptions(f"max_attempts must be an integer >= 1, got {value!r}")
    if value > MAX_ATTEMPTS_MAX:
        raise InvalidOptions(f"max_attempts {value} is out of range [1, {MAX_ATTEMPTS_MAX}]")
    return value


def timeout(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0 < value < math.inf  # also refuses NaN
    ):
        raise InvalidOptions(f"timeout must be a positive number of seconds, got {value!r}")
    return float(value)


def run_after(value: Any) -> timedelta | datetime | None:
    """A delay (timedelta or seconds, >= 0) or a timezone-aware datetime."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return _aware(value)
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:  # an int too large for a float
            seconds = math.inf if value > 0 else -math.inf
    else:
        raise InvalidOptions(
            f"run_after must be a timedelta, seconds or an aware datetime, got {value!r}"
        )
    if math.isnan(seconds):
        raise InvalidOptions(f"run_after must be a number of seconds, got {value!r}")
    if seconds < 0:
        raise InvalidOptions(f"run_after must not be negative, got {seconds:g} seconds")
    if seconds > MAX_DELAY.total_seconds():
        raise InvalidOptions(
            f"run_after must be at most {MAX_DELAY.days:,} days, got {seconds:g} seconds"
        )
    return value if isinstance(value, timedelta) else timedelta(seconds=seconds)


def _aware(value: datetime) -> datetime:
    # A naive datetime means a different instant on every machine: refused, never guessed.
    if value.utcoffset() is None:
        raise InvalidOptions(
            f"run_after datetime {value.isoformat()} has no timezone; "
            "use an aware datetime such as datetime.now(timezone.utc)"
        )
    try:
        value.astimezone(timezone.utc)
    except OverflowError:
        raise InvalidOptions(
            f"run_after datetime {value.isoformat()} is out of range in UTC"
        ) from None
    return value


def unique_key(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidOptions(f"unique_key must be a non-empty string, got {value!r}")
    _text(value, "unique_key")
    size = len(value.encode("utf-8"))
    if size > MAX_UNIQUE_KEY_BYTES:
        raise InvalidOptions(
            f"unique_key takes {size:,} bytes in UTF-8, over the limit of "
            f"{MAX_UNIQUE_KEY_BYTES:,}; hash a long key (hashlib.sha256) and pass the digest"
        )
    return value


def max_argument_bytes(value: Any) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InvalidOptions(
            f"max_argument_bytes must be a positive integer or None, got {value!r}"
        )
    return value


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(w|d|h|m|s)", re.IGNORECASE)
_UNIT_SECONDS = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}


def duration(value: Any, what: str) -> timedelta:
    """A positive duration: a timedelta, seconds, or text such as "90s", "15m",
    "12h", "7d", "2w" or "1d12h" (a bare number is seconds)."""
    seconds: float | None = None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value) if abs(value) < 1e300 else math.inf
    elif isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            seconds = float(text)
        elif text and re.fullmatch(rf"(?:{_DURATION.pattern}\s*)+", text, re.IGNORECASE):
            seconds = sum(
                float(number) * _UNIT_SECONDS[unit.lower()]
                for number, unit in _DURATION.findall(text)
            )
    if seconds is None or not 0 < seconds <= MAX_DELAY.total_seconds():  # also refuses NaN
        raise InvalidOptions(
            f"{what} must be a positive duration (a timedelta, seconds, or text such as "
            f"'90s', '15m', '12h', '7d', '2w'), got {value!r}"
        )
    return value if isinstance(value, timedelta) else timedelta(seconds=seconds)
