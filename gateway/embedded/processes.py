"""The child processes behind ``dev``: free loopback ports, liveness, readiness and stopping.

Shared by the three servers' modules and the supervisor; nothing here knows which server it runs.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
READY_TIMEOUT = 60.0
POLL = 0.05


class EmbeddedServicesError(RuntimeError):
    """A server could not be found, started or reached."""


# --------------------------------------------------------------------------- ports


def bind_loopback(port: int) -> socket.socket:
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
    with bind_loopback(0) as sock:
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    try:
        bind_loopback(port).close()
    except OSError:
        return False
    return True


_handed_out: set[int] = set()  # ports given to a server by this process: never hand them out twice
_handed_out_lock = threading.Lock()


def pick_ports(preferred: list[int | None]) -> list[int]:
    """One distinct free port per entry: the preferred one when it is free, else a new one."""
    held: list[socket.socket] = []
    ports: list[int] = []
    with _handed_out_lock:
        try:
            for want in preferred:
                sock = None
                if want is not None and want not in ports:
                    with contextlib.suppress(OSError):
                        sock = bind_loopback(want)
                while sock is None:
                    sock = bind_loopback(0)
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


def pid_alive(pid: int) -> bool:
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


def is_our_process(pid: int, executable: str, cwd: Path) -> bool:
    """Whether ``pid`` is alive and runs ``executable`` in ``cwd`` (guards against reused pids)."""
    if not pid_alive(pid):
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


class Child:
    """A server process: one we started (``popen``) or one found again from the state file."""

    def __init__(self, name: str, pid: int, popen: subprocess.Popen[bytes] | None = None) -> None:
        self.name = name
        self.pid = pid
        self.popen = popen

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return pid_alive(self.pid)

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
            time.sleep(POLL)
        return True


def stop_children(plan: list[tuple[Child, signal.Signals, float]]) -> None:
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


def open_log(path: Path, what: str) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    log = path.open("ab")
    log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {what}\n".encode())
    log.flush()
    return log


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def wait_ready(
    what: str, check: Callable[[], bool], child: Child | None, log_path: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if child is not None and not child.alive():
            raise EmbeddedServicesError(
                f"{what} exited before it was ready; last lines of {log_path}:\n{log_tail(log_path)}"
            )
        if time.monotonic() >= deadline:
            raise EmbeddedServicesError(
                f"{what} did not answer within {timeout:.0f} s; "
                f"last lines of {log_path}:\n{log_tail(log_path)}"
            )
        time.sleep(POLL)


def package_dir(module: str) -> Path:
    """Directory of an installed package, found without importing it (no import side effects)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServicesError(
            f"package {module!r} is not installed: pip install 'tryon-gateway[embedded]'"
        )
    return Path(next(iter(spec.submodule_search_locations)))


# --------------------------------------------------------------------------- SeaweedFS


def write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
