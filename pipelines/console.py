"""What a local pipeline run shows on the terminal: one line per step as it ends, progress of the long steps.

:class:`Console` only renders; :mod:`faceops.kfp.pipelines.watch` tells it what happens. A step line reads::

    train                     ok         93.4 s

with the status one of :data:`STATUSES`. Steps that report progress (images of a preprocessing shard, epochs
of training) get a tqdm bar when the stream is a terminal, and otherwise a plain line at most every
``interval`` seconds (``  train: 3/5 epoch (60%)``), so a log file or a CI job is not flooded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

__all__ = ["STATUSES", "Console", "step_line"]

STATUSES = ("ok", "failed", "cached", "skipped")
_NAME_WIDTH = 26


def step_line(name: str, status: str, seconds: float | None = None, detail: str = "") -> str:
    """The line of one step: name, status and, when it ran, its wall time; ``detail`` follows."""
    if status not in STATUSES:
        raise ValueError(f"unknown step status {status!r}: use one of {STATUSES}")
    wall = f"{seconds:8.1f} s" if seconds is not None else ""
    return f"  {name:<{_NAME_WIDTH}} {status:<8}{wall}{'  ' + detail if detail else ''}".rstrip()


class Console:
    """Step lines and progress on ``stream``; safe to call from several threads (kfp runs shards in threads).

    Args:
        stream: where to write (the terminal's stdout, not the run's log).
        tty: draw tqdm bars; default: whether ``stream`` is a terminal.
        interval: seconds between two plain progress lines of one step (no terminal).
        clock: the time source (tests pass a fake one).
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        tty: bool | None = None,
        interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.tty = _isatty(stream) if tty is None else tty
        self.interval, self.clock = interval, clock
        self._lock = threading.RLock()
        self._bars: dict[str, Any] = {}
        self._last: dict[str, float] = {}

    def line(self, text: str) -> None:
        """Print a line (above the bars, when some are drawn)."""
        with self._lock:
            if self._bars:
                from tqdm import tqdm

                tqdm.write(text, file=self.stream)
            else:
                self.stream.write(text + "\n")
            self.stream.flush()

    def step(self, name: str, status: str, seconds: float | None = None, detail: str = "") -> None:
        """A step ended: its bar goes, its line is printed."""
        with self._lock:
            self.done(name)
            self.line(step_line(name, status, seconds, detail))

    def started(self, name: str) -> None:
        """A step started: its plain progress lines are counted from now."""
        with self._lock:
            self._last.setdefault(name, self.clock())

    def progress(self, name: str, done: int, total: int, unit: str) -> None:
        """``done`` of ``total`` ``unit`` of step ``name`` (the sum over its shards) are done."""
        if total <= 0:
            return
        with self._lock:
            if self.tty:
                self._bar(name, done, total, unit)
                return
            now = self.clock()
            last = self._last.setdefault(name, now)
            if done < total and now - last >= self.interval:
                self._last[name] = now
                self.line(f"  {name}: {done}/{total} {unit} ({100 * done // total}%)")

    def done(self, name: str) -> None:
        """Remove the bar of step ``name`` (when it has one)."""
        with self._lock:
            bar = self._bars.pop(name, None)
            if bar is not None:
                bar.close()
            self._last.pop(name, None)

    def close(self) -> None:
        """Remove every bar."""
        with self._lock:
            for name in list(self._bars):
                self.done(name)

    def _bar(self, name: str, done: int, total: int, unit: str) -> None:
        from tqdm import tqdm

        bar = self._bars.get(name)
        if bar is None:
            bar = self._bars[name] = tqdm(
                total=total, desc=f"  {name}", unit=unit, file=self.stream, leave=False, dynamic_ncols=True
            )
        if bar.total != total:
            bar.total = total
        bar.update(max(0, done - bar.n))
        bar.refresh()


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
