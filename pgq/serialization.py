"""JSON in and out of the jobs table. Nothing else is accepted: no pickle,
so a job row can never carry code."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from .exceptions import SerializationError

# Extra checks for arguments (the Django app adds one that rejects model
# instances with a hint to pass the primary key).
ArgumentCheck = Callable[[str, Any], None]
_argument_checks: list[ArgumentCheck] = []


def add_argument_check(check: ArgumentCheck) -> None:
    """Run ``check(label, value)`` on every argument before encoding it."""
    if check not in _argument_checks:
        _argument_checks.append(check)


# \u0000 escaping a NUL, not the text "\\u0000" (an escaped backslash before "u0000").
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


# One encoder for every call: json.dumps() with options builds a new one each time.
_encode = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode


def _dumps(value: Any) -> str:
    """Compact JSON, ASCII only (so its length is its size in bytes)."""
    try:
        text = _encode(value)
    except RecursionError:
        raise ValueError("is nested too deeply") from None
    # Valid JSON that PostgreSQL's jsonb refuses. Both checks are cheap misses
    # for most text; the precise ones run only when the escape appears at all.
    if "\\u0000" in text and _NUL_ESCAPE.search(text):
        raise ValueError("contains a NUL character (\\u0000), which PostgreSQL cannot store")
    if "\\ud" in text:
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(
                "contains a lone surrogate (\\ud800-\\udfff), which is not valid Unicode"
            ) from None
    return text


def _describe(value: Any) -> str:
    return type(value).__qualname__


def _check_one(label: str, value: Any) -> None:
    for check in _argument_checks:
        check(label, value)
    try:
        _dumps(value)
    except (TypeError, ValueError) as exc:
        raise SerializationError(
            f"{label} is not JSON-serializable ({_describe(value)}): {exc}"
        ) from None


def encode_arguments(
    task: str, args: Sequence[Any], kwargs: Mapping[str, Any], *, max_bytes: int | None = None
) -> tuple[str, str]:
    """Encode a call's arguments, or name the first one that is not JSON; refuse
    them if together they take more than ``max_bytes``."""
    if _argument_checks:
        _run_checks(task, args, kwargs)
    try:
        args_json, kwargs_json = _dumps(list(args)), _dumps(dict(kwargs))
    except (TypeError, ValueError):
        _check_all(task, args, kwargs)
        raise  # unreachable: _check_all raised for the culprit
    size = len(args_json) + len(kwargs_json)
    if max_bytes is not None and size > max_bytes:
        raise SerializationError(
            f"{task}: the arguments take {size:,} bytes as JSON, over the limit of "
            f"{max_bytes:,} (App(max_argument_bytes=...)); pass a reference to large data "
            "instead of the data"
        )
    return args_json, kwargs_json


def _labelled(
    task: str, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> Iterator[tuple[str, Any]]:
    for position, value in enumerate(args):
        yield f"{task}: positional argument {position}", value
    for key, value in kwargs.items():
        yield f"{task}: argument {key!r}", value


def _run_checks(task: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    # Only the extra checks: the whole call is encoded once, afterwards.
    for label, value in _labelled(task, args, kwargs):
        for check in _argument_checks:
            check(label, value)


def _check_all(task: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    for position, value in enumerate(args):
        _check_one(f"{task}: positional argument {position}", value)
    for key, value in kwargs.items():
        if not isinstance(key, str):
            raise SerializationError(f"{task}: keyword argument names must be strings")
        _check_one(f"{task}: argument {key!r}", value)


def encode_result(value: Any) -> str:
    """Encode what a task returned; raise ``SerializationError`` if it is not JSON."""
    try:
        return _dumps(value)
    except (TypeError, ValueError) as exc:
        raise SerializationError(
            f"the task returned a value that is not JSON-serializable ({_describe(value)}): {exc}"
        ) from None


def decode(text: str) -> Any:
    return json.loads(text)
