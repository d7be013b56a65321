"""What a local run shows: step lines, progress (bars on a terminal, spaced lines otherwise), failed steps'
tails, and the progress files the steps write. No pipeline runs here: the watch is fed like kfp.local feeds it."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from faceops.kfp.pipelines.console import Console, step_line
from faceops.kfp.pipelines.watch import RunLog, StepWatch


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_step_line_names_the_step_its_status_and_time() -> None:
    line = step_line("preprocess-merge", "ok", 12.34)
    assert line.split() == ["preprocess-merge", "ok", "12.3", "s"]
    assert step_line("promote", "skipped", None, "condition not met").split() == [
        "promote",
        "skipped",
        "condition",
        "not",
        "met",
    ]
    with pytest.raises(ValueError, match="unknown step status"):
        step_line("train", "done")


def test_plain_progress_lines_are_spaced_by_the_interval() -> None:
    out, clock = io.StringIO(), _Clock()
    console = Console(out, tty=False, interval=30, clock=clock)
    console.started("train")
    for epoch, at in ((1, 10), (2, 31), (3, 40), (4, 62)):
        clock.now = at
        console.progress("train", epoch, 5, "epoch")
    clock.now = 100
    console.progress("train", 5, 5, "epoch")  # complete: the step line says it
    console.step("train", "ok", 100.0)
    lines = out.getvalue().splitlines()
    assert lines == ["  train: 2/5 epoch (40%)", "  train: 4/5 epoch (80%)", step_line("train", "ok", 100.0)]


def test_a_terminal_gets_a_bar_that_goes_when_the_step_ends() -> None:
    out = io.StringIO()
    console = Console(out, tty=True)
    console.progress("preprocess-shard", 5, 20, "img")
    console.progress("preprocess-shard", 20, 20, "img")
    assert "preprocess-shard" in out.getvalue() and "20/20" in out.getvalue()
    console.step("preprocess-shard", "ok", 3.0)
    assert not console._bars
    assert out.getvalue().rstrip().endswith(step_line("preprocess-shard", "ok", 3.0))


def _fake_kfp(watch: StepWatch):
    """execute_single_task / run_single_task_implementation stand-ins, wrapped like kfp.local's are."""
    ok, failure = SimpleNamespace(name="SUCCESS"), SimpleNamespace(name="FAILURE")

    def dispatch(task_name: str, lines: list[str], status) -> tuple[dict, object]:
        for line in lines:
            print(line)
        return {}, status

    run = watch.wrap_dispatch(dispatch)

    def execute(*, task_name: str, pipeline_resource_name: str, cached=False, lines=(), status=ok):
        return ({}, ok) if cached else run(task_name, list(lines), status)

    return watch.wrap_execute(execute), ok, failure


def test_the_watch_reports_ran_cached_failed_and_skipped_steps(tmp_path: Path) -> None:
    import contextlib

    out = io.StringIO()
    log = RunLog(tmp_path / "run.log")
    tasks = {"condition-3": ["promote"], "train": ["train"]}
    watch = StepWatch(log, Console(out, tty=False), tasks)
    execute, _, failure = _fake_kfp(watch)
    executor_json = '{"inputs": {"parameterValues": {}}}'
    with contextlib.redirect_stdout(log):
        execute(task_name="data-version", pipeline_resource_name="p", lines=[executor_json, "imported"])
        execute(task_name="validate", pipeline_resource_name="p", cached=True)
        threads = [
            threading.Thread(
                target=execute,
                kwargs={"task_name": "preprocess-shard", "pipeline_resource_name": f"p/for-loop-2-iteration-{i}"},
            )
            for i in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        watch.record("Skipping conditional task condition-3 (condition evaluated to False)", 20)
        lines = ["Traceback (most recent call last):", "faceops.errors.TrainingError: no classes"]
        execute(task_name="train", pipeline_resource_name="p", lines=lines, status=failure)
    log.close()

    shown = out.getvalue().splitlines()
    assert shown[0].split()[:2] == ["data-version", "ok"]
    assert shown[1].split() == ["validate", "cached"]
    assert sorted(line.split()[1] for line in shown[2:4]) == ["[0]", "[1]"]
    assert shown[4].split() == ["promote", "skipped", "condition", "not", "met"]
    assert shown[5].split()[:2] == ["train", "failed"]
    assert shown[6:] == [f"    | {line}" for line in lines]  # the failed step's own last lines
    assert executor_json not in out.getvalue()
    # everything printed is in the log, and each step's lines are kept apart
    assert executor_json in (tmp_path / "run.log").read_text()
    assert log.tail("data-version") == [executor_json, "imported"]
    assert watch.failed == ["train"]
    assert [s["status"] for s in watch.steps] == ["ok", "cached", "ok", "ok", "skipped", "failed"]


def test_progress_files_of_running_steps_are_summed_over_shards(tmp_path: Path, monkeypatch) -> None:
    from faceops.kfp.components._io import PROGRESS_ENV, progress

    monkeypatch.setenv(PROGRESS_ENV, str(tmp_path / "progress"))
    report = progress("preprocess-shard", "img")
    assert report is not None
    report(3, 10)
    written = json.loads(next((tmp_path / "progress").glob("preprocess-shard-*.json")).read_text())
    assert written == {"step": "preprocess-shard", "done": 3, "total": 10, "unit": "img"}
    (tmp_path / "progress" / "preprocess-shard-1.json").write_text(
        json.dumps({"step": "preprocess-shard", "done": 5, "total": 5, "unit": "img"})
    )
    (tmp_path / "progress" / "train-1.json").write_text(
        json.dumps({"step": "train", "done": 1, "total": 5, "unit": "epoch"})
    )

    seen: list[tuple] = []
    console = SimpleNamespace(progress=lambda *a: seen.append(a), started=lambda name: None)
    watch = StepWatch(RunLog(tmp_path / "run.log"), console, {})  # type: ignore[arg-type]
    watch._active = {"preprocess-shard": 1}  # train is not running (e.g. finished): no bar for it
    watch.progress(tmp_path / "progress")
    assert seen == [("preprocess-shard", 8, 15, "img")]

    monkeypatch.delenv(PROGRESS_ENV)
    assert progress("train", "epoch") is None  # outside the local runner (a cluster): no files
