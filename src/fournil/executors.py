"""The tasks of a stage (corpus passes, mixture encoding) on datatrove's executors: local processes,
Slurm or Ray, chosen by the recipe (`<stage>.executor`, `executor_options`, `workers`).

Every task ends with datatrove's completion marker, so a stage run again redoes only unfinished
tasks. `run_executor` runs the tasks and does not return until each has its marker: a task that
failed, was cancelled or will never start stops it with one line naming the tasks and their logs.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

from datatrove.executor import SlurmPipelineExecutor
from datatrove.executor.ray import RayPipelineExecutor

from fournil import slurm
from fournil.errors import FournilError

RESUME = "the finished tasks are kept: fix that, then run the same command again"


def _recorded_id(retrieve, job_ids: list[str], output: str) -> str:
    job_id = retrieve(output)
    job_ids.append(job_id)
    return job_id


class SlurmExecutor(SlurmPipelineExecutor):
    """datatrove's Slurm executor that remembers each array job it submits, so the stage can ask Slurm
    how its tasks fare. It submits no stats-merging job: fournil reads the tasks' own files, and that
    job, waiting on an array with a failed task, would stay in the queue forever."""

    def __init__(self, *args, poll_seconds: float = 30.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.poll_seconds = poll_seconds
        self.job_ids: list[str] = []
        self.job_id_retriever = partial(_recorded_id, self.job_id_retriever, self.job_ids)

    def launch_merge_stats(self) -> None:
        pass

    def launch_job(self) -> None:
        try:
            super().launch_job()
        except FileNotFoundError as error:
            if error.filename != "sbatch":
                raise
            raise FournilError("executor: slurm needs Slurm's sbatch on PATH; run the stage from a node of the cluster") from None
        except subprocess.CalledProcessError as error:
            raise FournilError(f"sbatch refused the job (exit {error.returncode}, its message is above); "
                               f"check executor_options (partition, time, account, ...)") from None

    def array_tasks(self) -> dict[slurm.ArrayTask, list[int]]:
        """Each submitted array task and the ranks it runs (as datatrove maps them: ranks_to_run.json)."""
        if not self.job_ids:
            return {}
        with self.logging_dir.open("ranks_to_run.json", "r") as f:
            ranks = json.load(f)
        jobs = math.ceil(len(ranks) / self.tasks_per_job)
        size = min(jobs, self.max_array_size) if self.max_array_size != -1 else jobs
        found = {}
        for k, job in enumerate(self.job_ids):
            for index in range(size):
                first = (index + self.max_array_size * k) * self.tasks_per_job
                if first < len(ranks):
                    found[slurm.ArrayTask(job, index)] = ranks[first:first + self.tasks_per_job]
        return found


class RayExecutor(RayPipelineExecutor):
    """datatrove's Ray executor, with SIGTERM's default action in the processes that run the ranks.
    datatrove runs a Ray task's ranks in a process pool forked from the Ray worker, so they inherit
    Ray's Python-level SIGTERM handler, which acts only when the interpreter gets to it. Once, after
    a rank raised, the pool's terminate left such a process alive and the stage waiting for it for
    ever (tests/test_mixture_executors.py; a SIGTERM sent by hand ended it); the default action ends
    the process in the kernel, whatever its interpreter is doing."""

    def _run_for_rank(self, rank: int, local_rank: int = 0, node_rank: int = -1):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        return super()._run_for_rank(rank, local_rank, node_rank)


def make_executor(pipeline: list, tasks: int, workers: int, logging_dir: Path, kind: str, options: dict, name: str):
    """A datatrove executor for the pipeline: local processes by default, Slurm or Ray when the recipe says so."""
    if kind == "slurm":
        return SlurmExecutor(pipeline=pipeline, tasks=tasks, logging_dir=str(logging_dir), job_name=name,
                             **{"time": "24:00:00", "partition": "cpu", **options})
    if kind == "ray":
        try:
            import ray
        except ImportError:
            raise FournilError("executor: ray needs Ray: pip install 'fournil[cluster]'") from None
        options = dict(options)
        address = options.pop("address", None)  # a running cluster ("auto", "ray://host:10001"); none: a local instance
        if not ray.is_initialized():
            ray.init(address=address, log_to_driver=False)  # workers' logs stay in Ray's log folder
        executor = RayExecutor(pipeline=pipeline, tasks=tasks, workers=workers, logging_dir=str(logging_dir), **options)
        if address is None:  # a local instance cannot grow: a task no node can hold would wait for ever
            _check_ray_fits(executor, ray.nodes())
        return executor
    from datatrove.executor import LocalPipelineExecutor

    return LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=min(workers, tasks), logging_dir=str(logging_dir),
                                 start_method="fork")


def _check_ray_fits(executor, nodes: list[dict]) -> None:
    want = {"CPU": executor.cpus_per_task, "GPU": executor.gpus_per_task,
            "memory": executor.mem_per_cpu_gb * executor.cpus_per_task * 2**30}
    have = [node.get("Resources", {}) for node in nodes if node.get("Alive")]
    if not any(all(r.get(k, 0) >= v for k, v in want.items() if v) for r in have):
        most = {k: max((r.get(k, 0) for r in have), default=0) for k in want}
        raise FournilError(f"executor: ray: a task asks for {want['CPU']:g} CPU, {want['memory'] / 2**30:.2f} GB of memory and "
                           f"{want['GPU']:g} GPU, more than any node of the local Ray instance has (at most {most['CPU']:g} CPU, "
                           f"{most['memory'] / 2**30:.2f} GB, {most['GPU']:g} GPU), so it would never start; lower "
                           f"executor_options.mem_per_cpu_gb or cpus_per_task")


_parent: int | None = None  # while an executor runs: the pid its forked workers must not outlive


def _die_with_parent() -> None:
    """In a child forked while an executor runs: be killed when the parent dies, even by kill -9
    (datatrove's pool workers and its Manager would otherwise live on, orphaned). Linux only."""
    global _parent
    if _parent is None or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != _parent:  # the parent died before the call
        os._exit(1)
    _parent = os.getpid()  # a child of this child dies with this one


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_die_with_parent)


def completed(logging_dir: Path) -> set[int]:
    """The ranks with a completion marker."""
    done = logging_dir / "completions"
    return {int(p.name) for p in done.iterdir() if p.name.isdigit()} if done.is_dir() else set()


def _error_line(log: Path) -> str:
    """The exception a task's log ends with ('FournilError: … is corrupt'), or ''."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        match = re.match(r"([\w.]*(?:Error|Exception|Interrupt|Exit)): (.*)", re.sub(r"\x1b\[[0-9;]*m", "", line).strip())
        if match:
            return f"{match.group(1).rsplit('.', 1)[-1]}: {match.group(2)[:300]}"
    return ""


def _lost(what: str, tasks: int, lost: list[tuple[list[int], str, list[Path]]], finished: int) -> FournilError:
    """One line: which tasks will not finish, why, where their logs are, and how to resume."""
    parts = []
    for ranks, why, logs in lost[:5]:
        task = f"task {ranks[0]}" if len(ranks) == 1 else f"tasks {ranks[0]}-{ranks[-1]}"
        parts.append(f"{task} {why} (log: {', '.join(map(str, logs))})")
    more = f"; and {len(lost) - 5} more" if len(lost) > 5 else ""
    count = sum(len(ranks) for ranks, _, _ in lost)
    return FournilError(f"{what}: {count} of {tasks} tasks did not finish: {'; '.join(parts)}{more}; "
                        f"the {finished} finished tasks are kept: fix the cause, then run the same command again")


def _task_log(logging_dir: Path, rank: int) -> Path:
    return logging_dir / "logs" / f"task_{rank:05d}.log"


def _wait_for_slurm(executor: SlurmExecutor, logging_dir: Path, tasks: int, what: str) -> None:
    """Until every task has its marker; a task Slurm says failed, was cancelled or will never start stops the wait."""
    array = executor.array_tasks()
    watch = slurm.Watch()
    while True:
        done = completed(logging_dir)
        pending = {task: ranks for task, ranks in array.items() if not set(ranks) <= done}
        if len(done) >= tasks or not pending:
            return
        lost = watch.lost(set(pending))
        if lost:
            slurm.cancel(executor.job_ids)
            rows = []
            for task, why in lost.items():
                logs = [Path(executor.slurm_logs_folder) / f"{task.name}.out"]
                logs += [p for p in (_task_log(logging_dir, r) for r in pending[task]) if p.is_file()]
                error = next((e for e in map(_error_line, logs) if e), "")
                rows.append((pending[task], f"(Slurm job {task.name}) {why}{': ' + error if error else ''}", logs))
            raise _lost(what, tasks, rows, len(done))
        time.sleep(executor.poll_seconds)


def run_executor(executor, logging_dir: Path, tasks: int, description: str, what: str, poll_seconds: float = 1.0) -> None:
    """Run the tasks and return once each has its completion marker (Slurm: wait for them, since
    submitting returns at once); raise a FournilError naming the tasks that did not finish.

    datatrove's own log lines (loguru, on stderr in every task) go to `<logging_dir>/datatrove.log`;
    the terminal shows one fournil bar of finished tasks instead.
    """
    from datatrove.utils.logging import setup_default_logger

    from fournil.progress import bar, console

    global _parent

    logging_dir.mkdir(parents=True, exist_ok=True)
    terminal = sys.stderr
    stop = threading.Event()
    console.file = terminal  # the bar keeps the terminal while stderr goes to the log file
    try:
        with open(logging_dir / "datatrove.log", "a", buffering=1, encoding="utf-8") as log, bar() as progress:
            task = progress.add_task(description, total=tasks, completed=len(completed(logging_dir)), rate="")

            def watch() -> None:
                while not stop.wait(poll_seconds):
                    progress.update(task, completed=len(completed(logging_dir)))

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            try:
                with contextlib.redirect_stderr(log):
                    setup_default_logger()  # loguru's sink is the stderr of the moment it is added
                    _parent = os.getpid()
                    try:
                        executor.run()
                    finally:
                        _parent = None
                    if isinstance(executor, SlurmExecutor):
                        _wait_for_slurm(executor, logging_dir, tasks, what)
            finally:
                stop.set()
                watcher.join()
                progress.update(task, completed=len(completed(logging_dir)))
    finally:
        console.file = None
        setup_default_logger()  # back to the terminal
    done = completed(logging_dir)
    missing = [rank for rank in range(tasks) if rank not in done]
    if missing:
        log_text = (logging_dir / "datatrove.log").read_text(encoding="utf-8", errors="replace")
        for fault in ("No space left on device", "Disk quota exceeded", "Read-only file system", "Permission denied"):
            if fault in log_text:
                raise FournilError(f"{what}: {len(missing)} of {tasks} tasks failed: {fault} (see {logging_dir / 'datatrove.log'}); {RESUME}")
        rows = []
        for rank in missing:
            log = _task_log(logging_dir, rank)
            error = _error_line(log)
            rows.append(([rank], f"failed{': ' + error if error else ''}" if log.is_file() else "did not run",
                         [log if log.is_file() else logging_dir / "datatrove.log"]))
        raise _lost(what, tasks, rows, len(done))


def keep_logs(work_logs: Path, logs: Path) -> None:
    """Keep datatrove's logs and stats (not its completion markers, which belong to the removed work folder)."""
    for path in sorted(work_logs.rglob("*")):
        if path.is_file() and "completions" not in path.relative_to(work_logs).parts:
            target = logs / path.relative_to(work_logs)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(path, target)
