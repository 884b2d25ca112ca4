"""Step progress into the incident thread, with ``chat.update`` bursts collapsed.

Slack rate-limits ``chat.update`` (about one per second per message); a restore
reports far more often. ``Debouncer`` sends the first update at once, keeps only
the newest text while the interval runs, and sends that when it ends; a step's
final result flushes immediately.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.models import Incident, Step
from bot.steps import StepResult
from handlers.slack.poster import SlackPoster


@dataclass
class _Slot:
    last_sent: float = float("-inf")
    pending: Callable[[], None] | None = None
    timer: threading.Timer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class Debouncer:
    def __init__(self, interval: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.interval = interval
        self.clock = clock
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.Lock()

    def _slot(self, key: str) -> _Slot:
        with self._lock:
            return self._slots.setdefault(key, _Slot())

    def submit(self, key: str, send: Callable[[], None]) -> None:
        """Send now if the interval has passed, else keep only this newest send for later."""
        slot = self._slot(key)
        with slot.lock:
            wait = slot.last_sent + self.interval - self.clock()
            if wait <= 0 and slot.timer is None:
                slot.last_sent = self.clock()
                now: Callable[[], None] | None = send
            else:
                slot.pending = send
                now = None
                if slot.timer is None:
                    slot.timer = threading.Timer(max(wait, 0.0), self._fire, args=(key,))
                    slot.timer.daemon = True
                    slot.timer.start()
        if now is not None:
            now()

    def _fire(self, key: str) -> None:
        slot = self._slot(key)
        with slot.lock:
            send, slot.pending, slot.timer = slot.pending, None, None
            if send is not None:
                slot.last_sent = self.clock()
        if send is not None:
            send()

    def flush(self, key: str, final: Callable[[], None]) -> None:
        """Drop anything pending and send ``final`` now (a step's result)."""
        slot = self._slot(key)
        with slot.lock:
            if slot.timer is not None:
                slot.timer.cancel()
            slot.pending, slot.timer = None, None
            slot.last_sent = self.clock()
        final()


def _tail(text: str, lines: int = 12) -> str:
    return "\n".join(text.splitlines()[-lines:])


class SlackProgressSink:
    """``bot.executor.ProgressSink`` posting one message per step into the thread."""

    def __init__(
        self,
        poster: SlackPoster,
        channel: str,
        thread_ts: str,
        *,
        debouncer: Debouncer | None = None,
        on_change: Callable[[int], None] | None = None,
    ) -> None:
        self.poster = poster
        self.channel = channel
        self.thread_ts = thread_ts
        self.debouncer = debouncer or Debouncer()
        self.on_change = on_change
        self._messages: dict[int, str] = {}

    def _header(self, incident: Incident, step: Step) -> str:
        return f"{incident.ref} step {step.seq}: {step.title}"

    def step_started(self, incident: Incident, step: Step) -> None:
        posted = self.poster.post(
            self.channel,
            f":arrows_counterclockwise: {self._header(incident, step)} …",
            thread_ts=self.thread_ts,
        )
        if posted and posted.get("ts"):
            self._messages[step.id] = posted["ts"]
        if self.on_change:
            self.on_change(incident.id)

    def step_progress(self, incident: Incident, step: Step, text: str) -> None:
        ts = self._messages.get(step.id)
        if not ts:
            return
        body = f":arrows_counterclockwise: {self._header(incident, step)} …\n```{_tail(text)}```"
        self.debouncer.submit(ts, lambda: self.poster.update(self.channel, ts, body))

    def step_finished(self, incident: Incident, step: Step, result: StepResult) -> None:
        mark = ":white_check_mark:" if result.ok else ":x:"
        body = f"{mark} {self._header(incident, step)}: {result.summary}"
        lines = result.data.get("lines") if isinstance(result.data, dict) else None
        if lines:
            body += "\n```" + "\n".join(str(x) for x in lines[-25:]) + "```"
        ts = self._messages.get(step.id)
        if ts:
            self.debouncer.flush(ts, lambda: self.poster.update(self.channel, ts, body))
        else:
            self.poster.post(self.channel, body, thread_ts=self.thread_ts)
        if self.on_change:
            self.on_change(incident.id)
