"""The CLI's progress display: a ``rich`` spinner with the stage, percent and elapsed time on a
terminal, nothing at all otherwise (pipes, CI logs, ``--json``)."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any, Optional

from tryon_client._core import RetryEvent
from tryon_client.models import ProgressEvent


class Display:
    def __init__(self, enabled: bool, description: str) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.description = description
        self._progress: Any = None
        self._task: Any = None
        self._start = time.monotonic()

    def __enter__(self) -> Display:
        if not self.enabled:
            return self
        try:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
        except ImportError:  # without the `progress` extra: one plain line, rewritten in place
            self._plain(self.description)
            return self
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._progress.start()
        # no total (a pulsing bar) until FtmvAI reports a percent; FitInView never does
        self._task = self._progress.add_task(self.description, total=None)
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
        elif self.enabled:
            sys.stderr.write("\n")

    def _plain(self, text: str) -> None:
        elapsed = time.monotonic() - self._start
        sys.stderr.write(f"\r{text} ({elapsed:.0f} s)    ")
        sys.stderr.flush()

    def progress(self, event: ProgressEvent) -> None:
        if not self.enabled:
            return
        text = f"{event.id}: {event.status}" + (f" {event.percent}%" if event.percent is not None else "")
        if self._progress is None:
            self._plain(text)
            return
        if event.percent is not None:
            self._progress.update(self._task, description=text, total=100, completed=event.percent)
        else:
            self._progress.update(self._task, description=text)

    def retry(self, event: RetryEvent) -> None:
        if not self.enabled:
            return
        text = f"{event.reason}: retrying in {event.delay:.1f} s"
        if self._progress is None:
            self._plain(text)
        else:
            self._progress.update(self._task, description=text)
