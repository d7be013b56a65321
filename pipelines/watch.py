"""A local run's output: everything to a log file, one line per step and the progress bars to the terminal.

kfp.local (2.17) runs each step as a subprocess (SubprocessRunner), reads the step's stdout and stderr through
a pipe and prints them in this process with ``print``; its own task logs go to a logging handler on
``sys.stdout``. No step writes to this process's file descriptors, so replacing ``sys.stdout`` and
``sys.stderr`` for the run catches all of it (executor JSON, Great Expectations' messages, tracebacks), in a
terminal, under click's runner and under pytest alike. Which step runs, and how it ended, comes from wrapping
kfp.local's one entry point for a task, ``task_executor.execute_single_task`` (its call of
``task_dispatcher.run_single_task_implementation`` tells a run from a cache hit); the steps kfp skips (after a
failure, or under a false ``dsl.If``) from its log records. Progress comes from the small JSON files the
long steps leave in a folder (``faceops.kfp.components._io.progress``), read twice a second.

kfp.local swaps ``builtins.print`` and the root logger's handlers per task, which goes wrong when a
``ParallelFor`` runs tasks in threads (one task restores what another had set); both are put back as they were
when the run ends.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import json
import logging
import re
import shutil
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from faceops.kfp.pipelines.console import Console

__all__ = ["RunLog", "StepWatch", "watch_run"]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_SKIP = re.compile(r"^Skipping (?:conditional )?task '?([\w-]+)'?[: ]\s*(.*)$")
_NOISE = re.compile(r"Skipping registering function|^-+$|^\d\d:\d\d:\d\d(?:\.\d+)? - [A-Z]+ - ")  # GX; kfp's own
_EXCEPTION = re.compile(r"^(?:[\w.]+\.)?[A-Z]\w*(?:Error|Failed|Exception|NotFound|Unavailable|Interrupt): ")
TAIL_LINES = 15


class RunLog(io.TextIOBase):
    """A text stream that appends to the run's log file (and echoes to ``echo`` when given), keeping the last
    lines each step printed so a failure can be quoted."""

    def __init__(self, path: Path, echo: TextIO | None = None, keep: int = 400) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.echo, self.keep = path, echo, keep
        self._file = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()
        self._labels: dict[int, str] = {}
        self._partial: dict[int, str] = {}
        self._tails: dict[str, deque[str]] = {}

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def write(self, text: str) -> int:
        with self._lock:
            self._file.write(text)
            if self.echo is not None:
                self.echo.write(text)
            ident = threading.get_ident()
            label = self._labels.get(ident)
            if label is not None:
                *lines, self._partial[ident] = re.split(r"[\r\n]", self._partial.get(ident, "") + text)
                tail = self._tails.setdefault(label, deque(maxlen=self.keep))
                tail.extend(c for c in (_ANSI.sub("", line).rstrip() for line in lines) if c.strip())
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self._file.flush()
            if self.echo is not None:
                self.echo.flush()

    def close(self) -> None:
        if self.closed:
            return
        super().close()  # flushes
        with self._lock:
            self._file.close()

    def label(self, name: str | None) -> None:
        """What the calling thread prints from now on belongs to step ``name`` (None: to no step)."""
        with self._lock:
            ident = threading.get_ident()
            self._partial.pop(ident, None)
            if name is None:
                self._labels.pop(ident, None)
            else:
                self._labels[ident] = name

    def tail(self, name: str, lines: int = TAIL_LINES, quiet: bool = True) -> list[str]:
        """The last ``lines`` lines step ``name`` printed (without kfp's and Great Expectations' chatter when
        ``quiet``); when they end in a traceback, the lines around its last exception line."""
        with self._lock:
            kept = list(self._tails.get(name, ()))
        if quiet:
            kept = [line for line in kept if not _NOISE.search(line.strip())]
        ends = [i for i, line in enumerate(kept[-4 * lines :]) if _EXCEPTION.match(line.strip())]
        if ends:
            last = len(kept) - len(kept[-4 * lines :]) + ends[-1]
            start = max(0, last - lines // 3)
            return kept[start : start + lines]
        return kept[-lines:]


def leaf_tasks(spec: Any) -> dict[str, list[str]]:
    """Every task name of a compiled pipeline (``PipelineSpec``) -> the steps (container tasks) under it."""
    components = dict(spec.components.items())
    dags = [spec.root.dag] + [c.dag for c in components.values() if c.WhichOneof("implementation") == "dag"]
    children: dict[str, list[str]] = {}
    for dag in dags:
        for name, task in dag.tasks.items():
            component = components.get(task.component_ref.name)
            if component is not None and component.WhichOneof("implementation") == "dag":
                children[name] = list(component.dag.tasks)
            else:
                children.setdefault(name, [])

    def leaves(name: str, depth: int = 0) -> list[str]:
        below = children.get(name, [])
        if not below or depth > 20:
            return [name]
        return [leaf for child in below for leaf in leaves(child, depth + 1)]

    return {name: leaves(name) for name in children}


class StepWatch:
    """Follows the steps of one run: times them, prints their lines, shows their progress and keeps
    ``steps`` (name, status, seconds), ``failed`` and ``failed_labels`` for the caller."""

    def __init__(self, log: RunLog, console: Console | None, tasks: dict[str, list[str]]) -> None:
        self.log, self.console, self.tasks = log, console, tasks
        self.steps: list[dict[str, Any]] = []
        self.failed: list[str] = []  # step names (a shard's step once per failed shard)
        self.failed_labels: list[str] = []  # as shown, e.g. 'preprocess-shard [1]': the key of RunLog.tail
        self.errors: list[str] = []
        self._active: dict[str, int] = {}
        self._lock = threading.RLock()
        self._local = threading.local()

    # --- kfp hooks ------------------------------------------------------------------------------------

    def wrap_execute(self, original: Any) -> Any:
        def execute_single_task(*args: Any, **kwargs: Any) -> Any:
            name = str(kwargs.get("task_name", "?"))
            iteration = re.search(r"-iteration-(\d+)$", str(kwargs.get("pipeline_resource_name", "")))
            label = f"{name} [{iteration.group(1)}]" if iteration else name
            self._local.ran = False
            with self._lock:
                self._active[name] = self._active.get(name, 0) + 1
            if self.console is not None:
                self.console.started(name)
            self.log.label(label)
            started = time.perf_counter()
            outcome = "failed"
            try:
                outputs, status = original(*args, **kwargs)
                outcome = "failed" if getattr(status, "name", str(status)) == "FAILURE" else "ok"
                return outputs, status
            finally:
                self.log.label(None)
                ran = getattr(self._local, "ran", True)
                if outcome == "ok" and not ran:
                    outcome = "cached"
                self._finish(name, label, outcome, time.perf_counter() - started if ran else None)

        return execute_single_task

    def wrap_dispatch(self, original: Any) -> Any:
        def run_single_task_implementation(*args: Any, **kwargs: Any) -> Any:
            self._local.ran = True
            return original(*args, **kwargs)

        return run_single_task_implementation

    def record(self, message: str, level: int) -> None:
        """A log record of kfp.local: the tasks it skips, its errors."""
        message = _ANSI.sub("", message)
        if level >= logging.ERROR:
            self.errors.append(message)
        match = _SKIP.match(message)
        if match:
            why = "after a failure" if "failed" in match.group(2) else "condition not met"
            for leaf in self.tasks.get(match.group(1), [match.group(1)]):
                self.skipped(leaf, why)

    # --- what is shown --------------------------------------------------------------------------------

    def skipped(self, name: str, why: str = "") -> None:
        with self._lock:
            if any(s["name"] == name for s in self.steps):
                return
            self.steps.append({"name": name, "status": "skipped", "seconds": None})
        if self.console is not None:
            self.console.step(name, "skipped", None, why)

    def _finish(self, name: str, label: str, outcome: str, seconds: float | None) -> None:
        with self._lock:
            self._active[name] -= 1
            self.steps.append({"name": label, "status": outcome, "seconds": seconds})
            if outcome == "failed":
                self.failed.append(name)
                self.failed_labels.append(label)
            if self.console is None:
                return
            if not self._active[name]:
                self.console.done(name)
            self.console.step(label, outcome, seconds)
            if outcome == "failed":
                for line in self.log.tail(label):
                    self.console.line(f"    | {line}")

    def progress(self, folder: Path) -> None:
        """Show the progress the running steps left in ``folder`` (summed over the shards of a step)."""
        if self.console is None:
            return
        totals: dict[str, list[Any]] = {}
        for path in folder.glob("*.json"):
            try:
                entry = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # being replaced right now: read it next time
            step = totals.setdefault(str(entry.get("step")), [0, 0, str(entry.get("unit", ""))])
            step[0] += int(entry.get("done", 0))
            step[1] += int(entry.get("total", 0))
        with self._lock:
            for name, (done, total, unit) in totals.items():
                if self._active.get(name):
                    self.console.progress(name, done, total, unit)


class _Records(logging.Filter):
    """Shows every record of the root logger to the watch (a filter: kfp.local replaces handlers, not
    filters)."""

    def __init__(self, watch: StepWatch) -> None:
        super().__init__()
        self.watch = watch

    def filter(self, record: logging.LogRecord) -> bool:
        self.watch.record(record.getMessage(), record.levelno)
        return True


def _poll(watch: StepWatch, folder: Path, stop: threading.Event, every: float) -> None:
    while not stop.wait(every):
        watch.progress(folder)


@contextlib.contextmanager
def watch_run(
    log_path: Path,
    spec: Any,
    console: Console | None,
    *,
    echo: TextIO | None = None,
    progress_dir: Path | None = None,
    poll_every: float = 0.5,
) -> Iterator[StepWatch]:
    """Send all output of a kfp.local run to ``log_path`` and follow its steps while the block runs.

    Args:
        spec: the compiled pipeline (``PipelineSpec``), to name the steps under a skipped group.
        console: where step lines and progress go; None shows none (``echo`` then usually shows it all).
        echo: a stream that gets a copy of everything written to the log (``--verbose``).
        progress_dir: the folder the steps leave their progress in (created; removed at the end).
    """
    from kfp.local import task_dispatcher
    from kfp.local.orchestrator import task_executor

    log = RunLog(log_path, echo)
    watch = StepWatch(log, console, leaf_tasks(spec))
    root = logging.getLogger()
    saved = (root.level, root.handlers[:], builtins.print)
    handler = logging.StreamHandler(log)
    handler.setFormatter(logging.Formatter("%(asctime)s - %(levelname)s - %(message)s", "%H:%M:%S"))
    records = _Records(watch)
    execute, dispatch = task_executor.execute_single_task, task_dispatcher.run_single_task_implementation
    stop = threading.Event()
    poller = None
    if progress_dir is not None:
        progress_dir.mkdir(parents=True, exist_ok=True)
        poller = threading.Thread(
            target=_poll, args=(watch, progress_dir, stop, poll_every), name="faceops-progress", daemon=True
        )
    task_executor.execute_single_task = watch.wrap_execute(execute)
    task_dispatcher.run_single_task_implementation = watch.wrap_dispatch(dispatch)
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.addFilter(records)
    try:
        if poller is not None:
            poller.start()
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            yield watch
    finally:
        stop.set()
        if poller is not None:
            poller.join()
        task_executor.execute_single_task, task_dispatcher.run_single_task_implementation = execute, dispatch
        root.removeFilter(records)
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        builtins.print = saved[2]
        if console is not None:
            console.close()
        log.close()
        if progress_dir is not None:
            shutil.rmtree(progress_dir, ignore_errors=True)
