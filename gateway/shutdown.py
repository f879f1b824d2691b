"""Stopping ``serve`` (or ``dev``) without cutting off held sync waits.

On SIGTERM or SIGINT uvicorn stops accepting connections and waits a grace period for the
requests in flight. A FitInView sync wait can hold its request for 90 s, longer than any grace
period, so on the same signal the completion hub is drained first: every held wait answers at
once with the job as it is (``running``, and the client polls), new waits return at once, and
uvicorn's own handling of the signal then proceeds as before. The handler is chained to the
one uvicorn installed, so it only runs where uvicorn owns the process's signals.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from types import FrameType
from typing import Any

from engine.runtime import Runtime

SIGNALS = (signal.SIGTERM, signal.SIGINT)


def drain_sync_waits_on_signals(runtime: Runtime) -> None:
    """Chain a drain of ``runtime``'s waiters in front of the current SIGTERM/SIGINT handlers."""
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    for signum in SIGNALS:
        previous: Any = signal.getsignal(signum)

        def handler(received: int, frame: FrameType | None, previous: Any = previous) -> None:
            loop.call_soon_threadsafe(runtime.hub.drain)
            if callable(previous):
                previous(received, frame)
            else:  # SIG_DFL or SIG_IGN: let the signal do what it did before
                signal.signal(received, previous)
                signal.raise_signal(received)

        signal.signal(signum, handler)
