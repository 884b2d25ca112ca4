"""Progress for terminal commands: a rich display on a terminal, a line per step otherwise.

Someone watching a restore wants to see it move; a log file, CI or a pipe wants one
line when a step starts and one when it ends, not a line per megabyte (a 5 MB restore
used to print 656). So the live display is used only when the stream is a terminal,
and everything else prints its start and end lines itself.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from providers.postgres.snapshot import human_size

DETAIL_WIDTH = 60


def is_terminal(stream: TextIO) -> bool:
    """True when a person is watching ``stream`` (a closed or odd stream counts as not)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _one_line(text: str, width: int = DETAIL_WIDTH) -> str:
    """The last line of a multi-line report, cut to fit beside the bar."""
    last = text.strip().splitlines()[-1] if text.strip() else ""
    return last if len(last) <= width else last[: width - 1] + "…"


class LiveProgress:
    """One rich display on ``stream`` (a terminal) with a row per running task.

    stdout is routed above the display only when it is the terminal too: when it is
    redirected to a file, results must stay in that file, not move to stderr.
    """

    def __init__(self, stream: TextIO, console: Console | None = None) -> None:
        self.console = console or Console(file=stream)
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[detail]}", markup=False),
            TimeElapsedColumn(),
            console=self.console,
            redirect_stdout=is_terminal(sys.stdout),
            redirect_stderr=False,
        )
        self.started = False

    def add(self, label: str, total: int | None = None) -> TaskID:
        if not self.started:
            self.progress.start()
            self.started = True
        task = self.progress.add_task(label, total=total, detail="")
        self.progress.refresh()  # a line printed above the display next must not show it stale
        return task

    def say(self, task: TaskID, text: str) -> None:
        self.progress.update(task, detail=_one_line(text))

    def moved(self, task: TaskID, done: int, rate: float) -> None:
        """Bytes so far; a total that turns out too small grows instead of passing 100%."""
        total = self.progress.tasks[task].total if task in self.progress.task_ids else None
        if total is not None and done > total:
            self.progress.update(task, total=done)
        detail = f"{human_size(done)} {human_size(int(rate))}/s"
        self.progress.update(task, completed=done, detail=detail)

    def remove(self, task: TaskID) -> None:
        self.progress.remove_task(task)
        self.progress.refresh()

    def close(self) -> None:
        """Stop the display, leaving its last state on its own line."""
        if self.started:
            self.progress.stop()
            self.started = False


class TransferProgress:
    """Bytes written by one transfer (a snapshot), called as ``progress(done)``.

    On a terminal: a live bar. Otherwise one line when data starts to flow (not before:
    a failure to connect stays the single line of its error) and one at the end.
    """

    def __init__(
        self, stream: TextIO, total: int | None, label: str, console: Console | None = None
    ) -> None:
        self.stream, self.total, self.label = stream, total, label
        self.started = time.monotonic()
        self.live = LiveProgress(stream, console) if console or is_terminal(stream) else None
        self.task: TaskID | None = None
        self.announced = False
        self.lock = threading.Lock()

    def __call__(self, done: int) -> None:
        with self.lock:
            if self.live is not None:
                self._bar().moved(self._ensure_task(), done, self._rate(done))
            elif not self.announced:
                self.announced = True
                guess = f" (last one was {human_size(self.total)})" if self.total else ""
                self._line(f"{self.label}: writing{guess}")

    def finish(self, done: int) -> None:
        with self.lock:
            elapsed = time.monotonic() - self.started
            if self.live is not None:
                self._bar().moved(self._ensure_task(), done, self._rate(done))
                self.live.close()
                return
            rate = human_size(int(self._rate(done)))
            self._line(f"{self.label}: {human_size(done)} in {elapsed:.1f}s ({rate}/s)")

    def abandon(self) -> None:
        """End the display, so the error that follows stands on a line of its own."""
        with self.lock:
            if self.live is not None:
                self.live.close()

    def _bar(self) -> LiveProgress:
        assert self.live is not None
        return self.live

    def _ensure_task(self) -> TaskID:
        if self.task is None:
            self.task = self._bar().add(self.label, self.total)
        return self.task

    def _rate(self, done: int) -> float:
        return done / max(time.monotonic() - self.started, 1e-6)

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()
