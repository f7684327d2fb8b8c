"""pgq: a job queue that lives in PostgreSQL."""

from __future__ import annotations

from .app import App
from .context import JobContext, current_job
from .exceptions import (
    Cancelled,
    ConfigurationError,
    DatabaseError,
    DatabaseUnavailable,
    Fail,
    InvalidOptions,
    JobCrashed,
    JobNotFound,
    JobTimeout,
    PermissionDenied,
    PgqError,
    Retry,
    SchemaNotMigrated,
    SchemaTooNew,
    SerializationError,
    UnknownTask,
)
from .jobs import Job, JobStatus
from .retention import Retention
from .tasks import Task
from .worker import Worker, WorkerConfig

__version__ = "0.1.0"

__all__ = [
    "App",
    "Cancelled",
    "ConfigurationError",
    "DatabaseError",
    "DatabaseUnavailable",
    "Fail",
    "InvalidOptions",
    "Job",
    "JobContext",
    "JobCrashed",
    "JobNotFound",
    "JobStatus",
    "JobTimeout",
    "PermissionDenied",
    "PgqError",
    "Retention",
    "Retry",
    "SchemaNotMigrated",
    "SchemaTooNew",
    "SerializationError",
    "Task",
    "UnknownTask",
    "Worker",
    "WorkerConfig",
    "__version__",
    "current_job",
]
