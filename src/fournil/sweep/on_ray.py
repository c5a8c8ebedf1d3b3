"""A sweep's tasks as Ray tasks: each runs its `--point P --until S` command(s) as subprocesses on
whichever node Ray picks, and takes the refs of the tasks it needs as arguments, so Ray starts it only
once they succeeded, and fails it unrun when one raised. The sweep reports each failed task with its
error line and log, and each task that needed it as not run; the others go on. Run again, it skips
finished tasks. The runs folder must be one file system for all nodes, as on Slurm.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any, Callable

from fournil.errors import FournilError
from fournil.sweep import execute
from fournil.sweep.points import Sweep

OPTIONS = {"address": None, "cpus_per_task": 1, "gpus": 0, "processes": 1}


class TaskFailed(Exception):
    """A task's command exited non-zero; the message is its error line and log."""


def _work(lines: list[list[str]], log_file: str, cwd: str, *needed: None) -> None:
    """In a Ray worker: run the task's commands in order, output to its log; raise on the first that fails."""
    start = os.path.getsize(log_file) if os.path.isfile(log_file) else 0
    with open(log_file, "a", encoding="utf-8") as out:
        for line in lines:
            code = subprocess.run(line, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, preexec_fn=execute.die_with(os.getpid())).returncode
            if code != 0:
                raise TaskFailed(f"{execute.last_error(Path(log_file), start)} (exit {code}; log: {log_file})")


def run(sweep: Sweep, runs_dir: Path, given: dict[str, Any], log: Callable[[str], None]) -> dict[str, str]:
    """Start every unfinished task on Ray and wait for them all; return the error of each point that failed or could not run."""
    opts = execute.executor_options(given, OPTIONS, "ray")
    try:
        import ray
    except ImportError:
        raise FournilError("executor: ray needs Ray: pip install 'fournil[cluster]'") from None
    if not ray.is_initialized():
        ray.init(address=opts["address"], log_to_driver=False)
    todo = execute.tasks(sweep)
    logs = (sweep.folder / "logs").resolve()
    logs.mkdir(parents=True, exist_ok=True)
    work = ray.remote(_work)
    refs: dict[int, Any] = {}
    for i, task in enumerate(todo):
        if execute.finished(sweep, task):
            continue
        log_file = logs / f"{task.point.name}.log"
        refs[i] = work.options(num_cpus=opts["cpus_per_task"], num_gpus=opts["gpus"], max_retries=0,
                               name=f"fournil-sweep-{task.point.name}-{task.until}").remote(
            execute.steps(sweep, runs_dir, task, opts["processes"]), str(log_file), os.getcwd(),
            *(refs[k] for k in task.needs if k in refs))
        log(f"sweep: {task.point.name} to {task.until}: Ray task (log: {log_file})")
    if len(refs) < len(todo):
        log(f"sweep: {len(todo) - len(refs)} of {len(todo)} tasks already finished, not started")
    try:
        waiting = list(refs.values())
        while waiting:
            _, waiting = ray.wait(waiting, num_returns=1)
    except KeyboardInterrupt:  # the tasks stop with the sweep (their commands get SIGTERM and checkpoint)
        for ref in refs.values():
            ray.cancel(ref, force=True)
        raise
    errors: dict[str, str] = {}
    failed: set[int] = set()
    for i, ref in refs.items():
        task = todo[i]
        lost = [k for k in task.needs if k in failed]
        if lost:
            errors.setdefault(task.point.name, f"not run: {todo[lost[0]].point.name}, whose stages it shares, failed")
            log(f"sweep: {task.point.name} {errors[task.point.name]}")
            failed.add(i)
            continue
        try:
            ray.get(ref)
            log(f"sweep: {task.point.name} done to {task.until}")
        except ray.exceptions.RayError as error:
            cause = getattr(error, "cause", None)
            message = str(cause) if isinstance(cause, TaskFailed) else " ".join(str(error).split())[:300]
            errors.setdefault(task.point.name, message)
            failed.add(i)
            log(f"sweep: {task.point.name} failed: {message}")
    return errors
