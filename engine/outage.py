"""Which failures mean "a backing service is down", so every API answers them 503, not 500.

PostgreSQL, Redis and the network between the gateway and them fail with the client
libraries' own exceptions (asyncpg's connection errors, ``OSError`` from the socket,
timeouts from a pool that can't hand out a connection), raised from whichever query or
command the request happened to be running. Routes don't catch them one by one: each
error table (the two dialects', the shared account route's, the admin API's) asks
:func:`as_unavailable` in its catch-all handler and, for an outage, answers the same
:class:`~engine.errors.ServiceUnavailable` it answers for a Redis or storage outage the
engine recognised itself, with a ``Retry-After`` of :data:`RETRY_AFTER_SECONDS`.
"""

from __future__ import annotations

import errno

import asyncpg
import redis.exceptions

from engine.errors import ServiceUnavailable

RETRY_AFTER_SECONDS = 5
"""What a 503 tells clients to wait: long enough for a failover or a restart to finish, short
enough that a client doesn't give up on a gateway that is back."""

_FILESYSTEM_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EEXIST, errno.EISDIR, errno.ENOTDIR}

_DATABASE_DOWN: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # class 08, incl. ConnectionDoesNotExistError (connection lost)
    asyncpg.CannotConnectNowError,  # 57P03: starting up, shutting down, in recovery
    asyncpg.AdminShutdownError,  # 57P01: terminated by a restart or a failover
    asyncpg.CrashShutdownError,  # 57P02
    asyncpg.TooManyConnectionsError,  # 53300
)

_REDIS_DOWN: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)


def _is_outage(exc: BaseException) -> bool:
    if isinstance(exc, _DATABASE_DOWN + _REDIS_DOWN):
        return True
    if isinstance(exc, asyncpg.InterfaceError):
        # "connection is closed", "pool is closing": the connection went away under the query.
        # Other interface errors (misuse of a connection) are bugs and stay 500s.
        text = str(exc).lower()
        return ("connection" in text and ("closed" in text or "lost" in text)) or "pool is closing" in text
    if isinstance(exc, asyncpg.InternalClientError):
        # a pooled connection whose protocol the dying server left mid-operation ("cannot switch
        # to state …; another operation is in progress"): seen when PostgreSQL was killed
        return True
    if isinstance(exc, TimeoutError):  # a connect, a pool acquire or a command that timed out
        return True
    if isinstance(exc, OSError):  # refused, reset, unreachable, name resolution (socket.gaierror)
        return exc.errno not in _FILESYSTEM_ERRNOS
    return False


def as_unavailable(exc: BaseException) -> ServiceUnavailable | None:
    """The 503 an unexpected exception stands for when it (or what caused it) is an outage, else None."""
    if isinstance(exc, ServiceUnavailable):
        return exc
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 5:
        if _is_outage(current):
            database = asyncpg.PostgresError | asyncpg.InterfaceError | asyncpg.InternalClientError
            what = "Database" if isinstance(current, database) else None
            if isinstance(current, _REDIS_DOWN):
                what = "Redis"
            detail = f"{what} unavailable" if what else "A backing service is unavailable"
            outage = ServiceUnavailable(f"{detail}; retry later")
            outage.__cause__ = exc
            return outage
        current = current.__cause__  # an explicit ``raise … from``; not whatever was being handled
        seen += 1
    return None
