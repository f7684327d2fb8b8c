"""The project's pgq App, bound to a Django database alias.

Enqueueing (``.delay()``, ``app.retry()`` ...) runs on Django's own connection
for the alias, so it is part of ``transaction.atomic()``: the job commits or
rolls back with the ORM writes around it. Outside an atomic block it runs in a
transaction of its own that commits at once, as Django's autocommit does.

The worker and the async calls (``adelay()``, ``aget_job()``) open their own
connections from the alias's parameters: LISTEN and long claims do not belong
on a request's connection, and Django's connections are synchronous. An async
enqueue therefore commits on its own, whatever transaction the caller is in.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any, cast

import django.db
import psycopg
from django.core.exceptions import ImproperlyConfigured
from django.db import connections, transaction
from django.utils.connection import ConnectionDoesNotExist
from psycopg import pq
from psycopg.conninfo import make_conninfo

from pgq import App, Retention
from pgq.db import describe_dsn
from pgq.exceptions import ConfigurationError, DatabaseError, DatabaseUnavailable

from .conf import get_settings
from .djangotask import DjangoTask


@cache
def _libpq_keywords() -> frozenset[str]:
    return frozenset(option.keyword.decode() for option in pq.Conninfo.get_defaults())


def conninfo_for_alias(alias: str) -> str:
    """A libpq conninfo that connects as Django does for ``DATABASES[alias]``."""
    return conninfo_for(_wrapper(alias))


def conninfo_for(wrapper: Any) -> str:
    """A libpq conninfo for a Django database connection (not yet connected).

    Built from Django's own connection parameters (NAME, USER, PASSWORD, HOST,
    PORT and the libpq keys of OPTIONS, such as sslmode); Django-only OPTIONS
    are left out. It holds the password: show it only through
    ``pgq.db.describe_dsn``.
    """
    alias = wrapper.alias
    if wrapper.vendor != "postgresql":
        raise ConfigurationError(
            f"DATABASES[{alias!r}] uses the {wrapper.vendor} backend; pgq needs PostgreSQL"
        )
    try:
        params = wrapper.get_connection_params()
    except ImproperlyConfigured as exc:
        raise ConfigurationError(f"DATABASES[{alias!r}]: {exc}") from None
    keywords = _libpq_keywords()
    libpq = {
        key: str(value)
        for key, value in params.items()
        if key in keywords and isinstance(value, (str, int, float)) and value != ""
    }
    return make_conninfo("", **libpq)


_FROM_SETTINGS = object()


class DjangoApp(App):
    """A pgq App whose database is a ``DATABASES`` alias (``PGQ["DATABASE"]``).

    Cheap to build and connected to nothing until used, so it can exist at
    import time, before settings are configured; the alias is read on use.
    """

    task_class = DjangoTask

    def __init__(self, alias: str | None = None, *, pool_size: int | None = None) -> None:
        super().__init__(None)
        self._alias = alias
        self._pool_size = pool_size
        self._retention: Retention | object | None = _FROM_SETTINGS

    def __repr__(self) -> str:
        return f"<DjangoApp alias={self._alias or 'PGQ[DATABASE]'} tasks={len(self.tasks)}>"

    @property
    def alias(self) -> str:
        return self._alias or get_settings().database

    @property
    def dsn(self) -> str:
        """The alias's conninfo (or a DSN set with ``configure()``), for the
        worker's and the async pool's own connections."""
        return self._dsn or conninfo_for_alias(self.alias)

    def _separate_listen_dsn(self) -> str | None:
        """A listen DSN set on this App, else ``PGQ["LISTEN_DATABASE"]``'s conninfo."""
        listen_alias = get_settings().listen_database
        if self._listen_dsn or listen_alias is None:
            return super()._separate_listen_dsn()
        return conninfo_for_alias(listen_alias)

    @property  # type: ignore[override]  # read from settings when not given
    def pool_size(self) -> int:
        return self._pool_size or get_settings().pool_size

    @pool_size.setter
    def pool_size(self, value: int) -> None:
        self._pool_size = value

    @property  # type: ignore[override]  # read from settings when not set
    def retention(self) -> Retention | None:
        """``PGQ["RETENTION"]``, unless set on this App."""
        if self._retention is _FROM_SETTINGS:
            return get_settings().retention
        return cast("Retention | None", self._retention)

    @retention.setter
    def retention(self, value: Retention | None) -> None:
        self._retention = value

    @contextmanager
    def connection(self, connection: Any = None) -> Iterator[psycopg.Connection[Any]]:
        """The given psycopg connection, else Django's connection for the alias:
        inside ``transaction.atomic()`` as part of it, outside in a transaction
        of its own that commits when the block exits without error."""
        if connection is not None:
            with super().connection(connection) as given:
                yield given
            return
        alias = self.alias
        wrapper = _wrapper(alias)
        raw = _raw_connection(wrapper, alias)
        if not wrapper.in_atomic_block:
            with transaction.atomic(using=alias):
                yield raw
            return
        try:
            yield raw
        except DatabaseError:
            # PostgreSQL has aborted the transaction: tell Django, as a failed
            # ORM query would, so the atomic block rolls back instead of
            # failing on its next query.
            transaction.set_rollback(True, using=alias)
            raise


def _wrapper(alias: str) -> Any:
    try:
        return connections[alias]
    except ConnectionDoesNotExist:
        raise ConfigurationError(
            f"PGQ['DATABASE'] is {alias!r}, which is not an alias in DATABASES"
        ) from None


def _raw_connection(wrapper: Any, alias: str) -> psycopg.Connection[Any]:
    try:
        wrapper.ensure_connection()
    except django.db.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = describe_dsn(conninfo_for(wrapper))
        raise DatabaseUnavailable(f"cannot connect to {where}: {reason}") from exc
    raw = wrapper.connection
    if not isinstance(raw, psycopg.Connection):
        raise ConfigurationError(
            f"DATABASES[{alias!r}] runs on {type(raw).__module__}; pgq needs Django's "
            "PostgreSQL backend on psycopg 3 (pip install 'psycopg[binary]')"
        )
    return raw
