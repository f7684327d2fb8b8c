"""pgq's Django settings: one ``PGQ`` dict, read and checked in one place.

Every key is optional::

    PGQ = {
        # The DATABASES alias that holds the pgq schema. .delay() runs on this
        # alias's connection, so it joins transaction.atomic(using=alias).
        "DATABASE": "default",
        # When DATABASE goes through PgBouncer in transaction mode: an alias of
        # the same database reached directly, where workers LISTEN for new
        # jobs. pgq then prepares no statement on DATABASE's connections.
        "LISTEN_DATABASE": None,
        # Queue and attempts of a @task that does not name its own.
        "DEFAULT_QUEUE": "default",
        "MAX_ATTEMPTS": 3,
        # Modules that `manage.py pgq_worker` imports from every installed app
        # to find tasks (Django's autodiscovery, as the admin does for admin.py).
        "TASK_MODULES": ["tasks"],
        # Connections of the pool that async calls (adelay, aget_result) use.
        "POOL_SIZE": 4,
        # Defaults of `manage.py pgq_worker`; its command-line options win.
        "WORKER": {
            "QUEUES": None,            # None: every queue; or a list of names
            "CONCURRENCY": 10,         # jobs run at once per process
            "PROCESSES": 1,            # worker processes under one supervisor
            "POLL_INTERVAL": 5.0,      # seconds between polls when no NOTIFY arrives
            "HEARTBEAT_INTERVAL": 5.0,
            "LEASE_SECONDS": 30.0,     # silent this long, a worker's jobs are recovered
            "SHUTDOWN_GRACE": 30.0,    # seconds running jobs get after SIGTERM
            "ISOLATION": "thread",     # or "process": each job in a child process
            "MEMORY_LIMIT_MB": None,   # per job, with "process" isolation
            "JOB_TIMEOUT": None,       # seconds, for tasks that set no timeout
            "METRICS_PORT": None,      # serve Prometheus metrics here (pgq-jobs[metrics])
        },
        # How long workers keep finished jobs (pgq.Retention); None: forever.
        # Durations are timedeltas, seconds, or text such as "12h", "7d", "2w".
        "RETENTION": {
            "SUCCEEDED": "1d",         # None keeps that status forever
            "CANCELLED": "7d",
            "FAILED": "30d",
            "RESULTS": None,           # results of succeeded jobs cleared after this
            "INTERVAL": "5m",          # between two runs in a worker
            "BATCH_SIZE": 1000,        # rows per statement
        },
    }

Unknown keys are errors (a typo must not be silently ignored). ``manage.py
check`` reports every problem; code that needs the settings raises
``ImproperlyConfigured`` with the same messages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from functools import cache
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from pgq import validation
from pgq.exceptions import InvalidOptions
from pgq.retention import Retention
from pgq.worker import WorkerConfig

_WORKER_DEFAULTS = WorkerConfig()


@dataclass(frozen=True, kw_only=True)
class WorkerSettings:
    """``PGQ["WORKER"]``: defaults of ``manage.py pgq_worker``, named like its options."""

    queues: tuple[str, ...] | None = _WORKER_DEFAULTS.queues
    concurrency: int = _WORKER_DEFAULTS.concurrency
    processes: int = 1
    poll_interval: float = _WORKER_DEFAULTS.poll_interval
    heartbeat_interval: float = _WORKER_DEFAULTS.heartbeat_interval
    lease_seconds: float = _WORKER_DEFAULTS.lease_seconds
    shutdown_grace: float = _WORKER_DEFAULTS.shutdown_grace
    isolation: str = _WORKER_DEFAULTS.isolation
    memory_limit_mb: int | None = _WORKER_DEFAULTS.memory_limit_mb
    job_timeout: float | None = _WORKER_DEFAULTS.job_timeout
    metrics_port: int | None = _WORKER_DEFAULTS.metrics_port

    def options(self) -> dict[str, Any]:
        """The worker command's option values, by option name."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, kw_only=True)
class PgqSettings:
    """The validated ``PGQ`` setting (see the module docstring)."""

    database: str = "default"
    listen_database: str | None = None
    default_queue: str = "default"
    max_attempts: int = 3
    task_modules: tuple[str, ...] = ("tasks",)
    pool_size: int = 4
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    retention: Retention | None = field(default_factory=Retention)


class SettingsError(ImproperlyConfigured):
    """The ``PGQ`` setting has problems; ``problems`` lists them, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


# Converters: return the clean value or raise InvalidOptions with the reason.


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidOptions(f"must be a non-empty string, got {value!r}")
    return value


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidOptions(f"must be an integer >= 1, got {value!r}")
    return value


def _seconds(minimum_open: bool) -> Callable[[Any], float]:
    def convert(value: Any) -> float:
        number_ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number_ok or value < 0 or (minimum_open and value == 0):
            bound = "> 0" if minimum_open else ">= 0"
            raise InvalidOptions(f"must be a number of seconds {bound}, got {value!r}")
        return float(value)

    return convert


def _isolation(value: Any) -> str:
    if value not in ("thread", "process"):
        raise InvalidOptions(f"must be 'thread' or 'process', got {value!r}")
    return str(value)


def _names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
        raise InvalidOptions(f"must be a non-empty list of names, got {value!r}")
    return tuple(_text(item) for item in value)


def _queues(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    return tuple(validation.queue_name(queue) for queue in _names(value))


def _queue(value: Any) -> str:
    return validation.queue_name(value)


TOP_LEVEL: dict[str, Callable[[Any], Any]] = {
    "DATABASE": _text,
    "LISTEN_DATABASE": lambda value: None if value is None else _text(value),
    "DEFAULT_QUEUE": _queue,
    "MAX_ATTEMPTS": validation.max_attempts,
    "TASK_MODULES": _names,
    "POOL_SIZE": _positive_int,
}
WORKER: dict[str, Callable[[Any], Any]] = {
    "QUEUES": _queues,
    "CONCURRENCY": _positive_int,
    "PROCESSES": _positive_int,
    "POLL_INTERVAL": _seconds(minimum_open=True),
    "HEARTBEAT_INTERVAL": _seconds(minimum_open=True),
    "LEASE_SECONDS": _seconds(minimum_open=True),
    "SHUTDOWN_GRACE": _seconds(minimum_open=False),
    "ISOLATION": _isolation,
    "MEMORY_LIMIT_MB": lambda value: None if value is None else _positive_int(value),
    "JOB_TIMEOUT": lambda value: None if value is None else _seconds(minimum_open=True)(value),
    "METRICS_PORT": lambda value: None if value is None else _positive_int(value),
}


def _duration(value: Any) -> Any:
    if value is None:
        return None
    return _interval(value)


def _interval(value: Any) -> Any:
    try:
        return validation.duration(value, "value")
    except InvalidOptions as exc:
        raise InvalidOptions(str(exc).removeprefix("value ")) from None


def _batch_size(value: Any) -> int:
    try:
        Retention(batch_size=value)
    except InvalidOptions as exc:
        raise InvalidOptions(str(exc).removeprefix("retention batch_size ")) from None
    return int(value)


RETENTION: dict[str, Callable[[Any], Any]] = {
    "SUCCEEDED": _duration,
    "CANCELLED": _duration,
    "FAILED": _duration,
    "RESULTS": _duration,
    "INTERVAL": _interval,
    "BATCH_SIZE": _batch_size,
}


def _convert(
    raw: Mapping[str, Any], converters: Mapping[str, Callable[[Any], Any]], where: str
) -> tuple[dict[str, Any], list[str]]:
    values: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in raw.items():
        converter = converters.get(key)
        if converter is None:
            known = ", ".join(converters)
            problems.append(f"{where} has an unknown key {key!r} (known: {known})")
            continue
        try:
            values[key.lower()] = converter(value)
        except InvalidOptions as exc:
            problems.append(f"{where}[{key!r}] {_reason(exc)}")
    return values, problems


def _reason(exc: InvalidOptions) -> str:
    text = str(exc)
    return text if text.startswith("must") else f"is invalid: {text}"


def read_settings(raw: Any) -> PgqSettings:
    """Validate a ``PGQ`` dict; raise ``SettingsError`` listing every problem."""
    if raw is None:
        return PgqSettings()
    if not isinstance(raw, Mapping):
        raise SettingsError([f"PGQ must be a dict, got {type(raw).__name__}"])
    raw = dict(raw)
    raw_worker = raw.pop("WORKER", None) or {}
    retention, retention_problems = _retention(raw.pop("RETENTION", {}))
    values, problems = _convert(raw, TOP_LEVEL, "PGQ")
    worker = WorkerSettings()
    if not isinstance(raw_worker, Mapping):
        problems.append(f"PGQ['WORKER'] must be a dict, got {type(raw_worker).__name__}")
    else:
        worker_values, worker_problems = _convert(raw_worker, WORKER, "PGQ['WORKER']")
        problems += worker_problems
        worker = WorkerSettings(**worker_values)
        if not worker_problems:
            problems += _worker_consistency(worker)
    problems += retention_problems
    if problems:
        raise SettingsError(problems)
    return PgqSettings(**values, worker=worker, retention=retention)


def _retention(raw: Any) -> tuple[Retention | None, list[str]]:
    """``PGQ["RETENTION"]``: a dict of Retention's fields in capitals, or None."""
    if raw is None:
        return None, []
    if not isinstance(raw, Mapping):
        return None, [f"PGQ['RETENTION'] must be a dict or None, got {type(raw).__name__}"]
    values, problems = _convert(raw, RETENTION, "PGQ['RETENTION']")
    return (Retention(**values) if not problems else None), problems


def _worker_consistency(worker: WorkerSettings) -> list[str]:
    options = worker.options()
    options.pop("processes")
    try:
        WorkerConfig(**options)
    except InvalidOptions as exc:
        return [f"PGQ['WORKER']: {exc}"]
    return []


@cache
def get_settings() -> PgqSettings:
    """The project's validated ``PGQ`` settings (re-read when a test overrides them)."""
    return read_settings(getattr(settings, "PGQ", None))


def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting == "PGQ":
        get_settings.cache_clear()


setting_changed.connect(_reset, dispatch_uid="pgq_django.conf.reset")
