"""Keeps ``dev``'s servers running: a server that dies is started again, with backoff, and logged.

Without it a dead Redis, PostgreSQL or SeaweedFS left the API answering 503 until someone restarted
``dev`` by hand. The gateway's own clients reconnect by themselves (the database pool, the Redis
client and the completion hub's subscription, the S3 client per call), so bringing the server back on
the same port is all recovery needs. A server that keeps dying is retried after 1, 2, 4 … up to
``max_backoff`` seconds, never in a tight loop; the backoff resets once it has stayed up for
``stable_after`` seconds.
"""

from __future__ import annotations

import logging
import threading
import time

from gateway.embedded.processes import EmbeddedServicesError
from gateway.embedded.services import EmbeddedServices

logger = logging.getLogger(__name__)


class Supervisor:
    """A daemon thread that checks the servers every ``interval`` seconds and restarts the dead."""

    def __init__(
        self,
        services: EmbeddedServices,
        *,
        interval: float = 1.0,
        first_backoff: float = 1.0,
        max_backoff: float = 30.0,
        stable_after: float = 60.0,
    ) -> None:
        self._services = services
        self._interval = interval
        self._first_backoff = first_backoff
        self._max_backoff = max_backoff
        self._stable_after = stable_after
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._backoff: dict[str, float] = {}
        self._next_try: dict[str, float] = {}
        #: restarts done so far, per server (for the log and the tests)
        self.restarts: dict[str, int] = {}

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="embedded-supervisor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop supervising (before the servers are stopped on purpose); waits for a restart under way."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()

    def check(self) -> None:
        """One round: restart every dead server whose backoff has passed."""
        dead = self._services.dead()
        for name in dead:
            now = time.monotonic()
            if self._stopping.is_set():
                return
            if now < self._next_try.get(name, 0.0):
                continue
            # Each restart, good or bad, pushes the next one further out until the server stays up.
            backoff = self._backoff.get(name, self._first_backoff)
            self._backoff[name] = min(backoff * 2, self._max_backoff)
            self._next_try[name] = now + backoff
            attempt = self.restarts.get(name, 0) + 1
            logger.warning("embedded %s is not running: starting it again (restart %d)", name, attempt)
            try:
                pid = self._services.restart(name)
            except (EmbeddedServicesError, OSError) as exc:
                logger.error("embedded %s did not start again (next try in %.0f s): %s", name, backoff, exc)
                continue
            self.restarts[name] = attempt
            logger.warning(
                "embedded %s running again: pid %d, after %.1f s", name, pid, time.monotonic() - now
            )
        for name in [n for n in self._backoff if n not in dead]:
            if time.monotonic() > self._next_try[name] + self._stable_after:
                del self._backoff[name], self._next_try[name]

    def _run(self) -> None:
        while not self._stopping.wait(self._interval):
            try:
                self.check()
            except Exception:  # the supervisor must outlive any one bad round
                logger.exception("embedded supervisor round failed")
