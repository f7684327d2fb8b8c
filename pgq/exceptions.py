"""The errors pgq raises, under one base class.

Each class's docstring is its default message. psycopg errors are turned into
these at one place (:mod:`pgq.db`), by SQLSTATE class, never by message text.
"""

from __future__ import annotations


class PgqError(Exception):
    """pgq failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigurationError(PgqError):
    """pgq is not configured: pass a DSN or set PGQ_DSN or DATABASE_URL."""


class DatabaseError(PgqError):
    """The database refused or failed the operation."""


class DatabaseUnavailable(DatabaseError):
    """Cannot connect to the database."""


class SchemaNotMigrated(DatabaseError):
    """The pgq schema is missing or out of date in this database: run `pgq migrate`."""


class SchemaTooNew(DatabaseError):
    """A newer pgq migrated this database: upgrade pgq."""


class PermissionDenied(DatabaseError):
    """The database role lacks a privilege pgq needs: see `pgq grant`."""


class UnknownTask(PgqError):
    """No task of that name is registered."""


class JobNotFound(PgqError):
    """No job has that id."""


class SerializationError(PgqError, TypeError):
    """Arguments and results must be JSON."""


class InvalidOptions(PgqError, ValueError):
    """An option has a value pgq cannot use."""


class Retry(Exception):
    """Raised by a task to be run again after ``in_seconds``.

    The attempt counts: once attempts are exhausted the job fails.
    """

    def __init__(self, in_seconds: float = 0.0, reason: str = "retry requested") -> None:
        if not 0 <= in_seconds < float("inf"):  # also refuses NaN
            raise InvalidOptions(f"Retry(in_seconds=...) must be >= 0 and finite, got {in_seconds}")
        super().__init__(reason)
        self.in_seconds = float(in_seconds)


class Fail(Exception):
    """Raised by a task to fail the job at once, whatever attempts remain."""


class Cancelled(Exception):
    """Raised in a task (or by it) when its job's cancellation was requested."""


class JobTimeout(Exception):
    """Raised in a task that ran past its ``timeout``."""


class JobCrashed(Exception):
    """The process running the job (``--isolation process``) died: a signal, a
    crash in C code, ``os._exit()``. Judged like an exception the task raised,
    so it is retried while attempts remain, unless ``retry_on`` leaves it out."""
