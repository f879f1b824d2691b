"""The three servers of ``dev`` together: found again or started under one data directory.

See the package docstring for the layout of the data directory and the side effects.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import secrets
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec

from gateway.embedded.postgres import DATABASE_NAME, DATABASE_USER, ensure_database, pg_ready, spawn_postgres
from gateway.embedded.processes import (
    HOST,
    Child,
    EmbeddedServicesError,
    is_our_process,
    pick_ports,
    stop_children,
    wait_ready,
    write_private,
)
from gateway.embedded.redis_server import redis_ready, spawn_redis
from gateway.embedded.seaweedfs import (
    S3_REGION,
    SeaweedPorts,
    remove_weed_sockets,
    s3_answers,
    s3_client,
    start_seaweed_s3,
)

logger = logging.getLogger(__name__)


class ServiceEndpoints(msgspec.Struct, frozen=True):
    """Where the running servers answer, in the form the gateway's settings take."""

    database_url: str
    redis_url: str
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str
    s3_region: str


class _State(msgspec.Struct, kw_only=True):
    s3_access_key: str
    s3_secret_key: str
    s3_region: str = S3_REGION
    postgres_pid: int | None = None
    postgres_port: int | None = None
    redis_pid: int | None = None
    redis_port: int | None = None
    s3_pid: int | None = None
    s3_ports: SeaweedPorts | None = None


class EmbeddedServices:
    """PostgreSQL, Redis and SeaweedFS S3 as child processes under ``data_dir`` (see the module docstring)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self.state_path = self.data_dir / "services.json"
        self.logs_dir = self.data_dir / "logs"
        self.pg_dir = self.data_dir / "postgres"
        self.redis_dir = self.data_dir / "redis"
        self.s3_dir = self.data_dir / "s3"
        #: seconds each service took in the last :meth:`start` (found again or started)
        self.timings: dict[str, float] = {}
        self._children: dict[str, Child] = {}

    # ---- public

    def start(self) -> ServiceEndpoints:
        """Find the servers again or start them (in parallel); return once each one answers.

        If one cannot be started, the others keep running and stay recorded in the state file, so the
        next :meth:`start` reuses them and :meth:`stop` stops them.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self._lock():
            state = self._read_state()
            self._write_state(state)  # persist freshly generated credentials before anything runs
            # In parallel: SeaweedFS alone needs ~3 s, PostgreSQL ~1 s on first start (initdb).
            with ThreadPoolExecutor(max_workers=3, thread_name_prefix="embedded-start") as pool:
                futures = [
                    pool.submit(start, state)
                    for start in (self._start_s3, self._start_postgres, self._start_redis)
                ]
            self._write_state(state)
            for future in futures:
                if (error := future.exception()) is not None:
                    raise error
            assert state.postgres_port is not None and state.redis_port is not None
            assert state.s3_ports is not None
            return ServiceEndpoints(
                database_url=f"postgresql://{DATABASE_USER}@{HOST}:{state.postgres_port}/{DATABASE_NAME}",
                redis_url=f"redis://{HOST}:{state.redis_port}/0",
                s3_endpoint=f"http://{HOST}:{state.s3_ports.s3}",
                s3_access_key=state.s3_access_key,
                s3_secret_key=state.s3_secret_key,
                s3_region=state.s3_region,
            )

    def running(self) -> bool:
        """Whether all three servers of this data directory are up (a ``dev`` is running or left them)."""
        if not self.state_path.exists():
            return False
        with self._lock():
            found = self._recorded(self._read_state())
        return all(child is not None for child in found.values())

    def stop(self) -> None:
        """Stop every server (in parallel), wait for them, and clear their pids from the state file."""
        if not self.state_path.exists():
            return
        with self._lock():
            state = self._read_state()
            plan = [
                (child, *_STOP[name]) for name, child in self._recorded(state).items() if child is not None
            ]
            try:
                stop_children(plan)
            finally:
                if state.s3_ports is not None:
                    remove_weed_sockets(state.s3_ports)
                state.postgres_pid = state.redis_pid = state.s3_pid = None
                self._children.clear()
                self._write_state(state)

    # ---- supervision (gateway.embedded.supervisor)

    def dead(self) -> list[str]:
        """The servers recorded in the state file whose process has exited (or never started)."""
        with self._lock():
            found = self._recorded(self._read_state())
        return [name for name, child in found.items() if child is None]

    def _recorded(self, state: _State) -> dict[str, Child | None]:
        """Each server the state file names, as its live process, or None where it is not running."""
        return {
            "postgres": self._find("postgres", state.postgres_pid, "postgres", self.pg_dir),
            "redis": self._find("redis", state.redis_pid, "redis-server", self.redis_dir),
            "seaweedfs": self._find("seaweedfs", state.s3_pid, "weed", self.s3_dir),
        }

    def restart(self, name: str) -> int:
        """Start server ``name`` again on the port it had, so clients' URLs stay valid; its new pid.

        Leftovers of the dead server's process group (PostgreSQL backends holding its shared memory)
        are killed first. Raises :class:`EmbeddedServicesError` when it cannot be started (the
        supervisor then tries again later).
        """
        with self._lock():
            state = self._read_state()
            if name == "postgres":
                if state.postgres_port is None:
                    raise EmbeddedServicesError("postgres was never started")
                _kill_group(state.postgres_pid)
                state.postgres_pid = self._spawn_postgres(state.postgres_port)
                pid = state.postgres_pid
            elif name == "redis":
                if state.redis_port is None:
                    raise EmbeddedServicesError("redis was never started")
                _kill_group(state.redis_pid)
                state.redis_pid = self._spawn_redis(state.redis_port)
                pid = state.redis_pid
            elif name == "seaweedfs":
                if state.s3_ports is None:
                    raise EmbeddedServicesError("seaweedfs was never started")
                _kill_group(state.s3_pid)
                remove_weed_sockets(state.s3_ports)
                weed = start_seaweed_s3(
                    self.s3_dir,
                    s3_port=state.s3_ports.s3,
                    access_key=state.s3_access_key,
                    secret_key=state.s3_secret_key,
                    region=state.s3_region,
                    log_path=self.logs_dir / "seaweedfs.log",
                    preferred_ports=state.s3_ports,
                )
                state.s3_ports, state.s3_pid = weed.ports, weed.pid
                self._children["seaweedfs"] = Child("seaweedfs", weed.pid, weed.process)
                pid = weed.pid
            else:
                raise ValueError(f"unknown embedded server {name!r}")
            self._write_state(state)
            return pid

    # ---- state

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        with (self.data_dir / "services.lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _read_state(self) -> _State:
        try:
            return msgspec.json.decode(self.state_path.read_bytes(), type=_State)
        except FileNotFoundError:
            pass
        except (msgspec.DecodeError, OSError) as exc:
            logger.warning("ignoring unreadable %s: %s", self.state_path, exc)
        return _State(s3_access_key=secrets.token_hex(10).upper(), s3_secret_key=secrets.token_hex(20))

    def _write_state(self, state: _State) -> None:
        write_private(self.state_path, msgspec.json.format(msgspec.json.encode(state)) + b"\n")

    def _find(self, name: str, pid: int | None, executable: str, cwd: Path) -> Child | None:
        """The live child named in the state file, if it still is our server."""
        if pid is None or not is_our_process(pid, executable, cwd):
            return None
        known = self._children.get(name)
        return known if known is not None and known.pid == pid else Child(name, pid)

    def _found_again(
        self, name: str, pid: int | None, executable: str, cwd: Path, ready: Callable[[], bool]
    ) -> bool:
        """Reuse the server from the state file when it is alive and answering; stop it if it is stuck."""
        child = self._find(name, pid, executable, cwd)
        if child is None:
            return False
        try:
            wait_ready(name, ready, child, self.logs_dir / f"{name}.log", 10.0)
        except EmbeddedServicesError:
            logger.warning("%s (pid %d) is running but does not answer: restarting it", name, child.pid)
            stop_children([(child, signal.SIGTERM, 15.0)])
            return False
        self._children[name] = child
        logger.info("%s found again: pid %d", name, child.pid)
        return True

    # ---- PostgreSQL

    def _start_postgres(self, state: _State) -> None:
        started = time.monotonic()
        port = state.postgres_port
        if port is None or not self._found_again(
            "postgres", state.postgres_pid, "postgres", self.pg_dir, functools.partial(pg_ready, port)
        ):
            port = pick_ports([state.postgres_port])[0]
            state.postgres_pid, state.postgres_port = None, port
            state.postgres_pid = self._spawn_postgres(port)
        ensure_database(port, self.logs_dir / "postgres.log")
        self.timings["postgres"] = time.monotonic() - started

    def _spawn_postgres(self, port: int) -> int:
        child = spawn_postgres(self.pg_dir, port, self.logs_dir / "postgres.log")
        self._children["postgres"] = child
        return child.pid

    # ---- Redis

    def _start_redis(self, state: _State) -> None:
        started = time.monotonic()
        port = state.redis_port
        if port is None or not self._found_again(
            "redis", state.redis_pid, "redis-server", self.redis_dir, functools.partial(redis_ready, port)
        ):
            port = pick_ports([state.redis_port])[0]
            state.redis_pid, state.redis_port = None, port
            state.redis_pid = self._spawn_redis(port)
        self.timings["redis"] = time.monotonic() - started

    def _spawn_redis(self, port: int) -> int:
        child = spawn_redis(self.redis_dir, port, self.logs_dir / "redis.log")
        self._children["redis"] = child
        return child.pid

    # ---- S3

    def _start_s3(self, state: _State) -> None:
        started = time.monotonic()
        found = False
        if state.s3_ports is not None:
            client = s3_client(state.s3_ports.s3, state.s3_access_key, state.s3_secret_key, state.s3_region)
            found = self._found_again(
                "seaweedfs", state.s3_pid, "weed", self.s3_dir, lambda: s3_answers(client)
            )
        if not found:
            state.s3_pid = None
            weed = start_seaweed_s3(
                self.s3_dir,
                access_key=state.s3_access_key,
                secret_key=state.s3_secret_key,
                region=state.s3_region,
                log_path=self.logs_dir / "seaweedfs.log",
                preferred_ports=state.s3_ports,
            )
            state.s3_ports = weed.ports
            state.s3_pid = weed.pid
            self._children["seaweedfs"] = Child("seaweedfs", weed.pid, weed.process)
        self.timings["seaweedfs"] = time.monotonic() - started


_STOP: dict[str, tuple[signal.Signals, float]] = {
    "postgres": (signal.SIGINT, 60.0),  # SIGINT = fast shutdown
    "redis": (signal.SIGTERM, 30.0),  # flushes the AOF and exits
    "seaweedfs": (signal.SIGTERM, 30.0),
}
"""How each server is asked to stop, and how long it gets before SIGKILL."""


def _kill_group(pid: int | None) -> None:
    """SIGKILL what is left of a dead server's process group (each server leads its own session)."""
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
