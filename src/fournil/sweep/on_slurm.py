"""A sweep's tasks as Slurm jobs: each task is one `sbatch` job that runs its `--point P --until S`
command(s), submitted with `--dependency=afterok:` on the jobs of the tasks it needs, so Slurm, not
fournil, decides when it starts. The sweep then waits: a task is done when its point's stages are
finished in the (shared) runs folder; `fournil.slurm.Watch` names the jobs that failed, were cancelled or
will never start, each reported with its error line and log, and the tasks that need a failed one are
cancelled and reported as not run. The others go on. Run again, the sweep submits only unfinished tasks.

Each job is a one-task array (`--array=0-0`), so Slurm's answers about it read as those about the
corpus stage's array tasks.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

from fournil import slurm
from fournil.errors import FournilError
from fournil.sweep import execute
from fournil.sweep.points import Sweep

OPTIONS = {"partition": "cpu", "time": "24:00:00", "cpus_per_task": 1, "mem_per_cpu_gb": 2, "gpus": 0, "processes": 1,
           "qos": None, "account": None, "sbatch_args": {}, "env_command": None, "poll_seconds": 30.0}


def script(lines: list[list[str]], job_name: str, log_file: Path, cwd: Path, opts: dict[str, Any]) -> str:
    """The batch script of one task: its resources as #SBATCH lines, then its commands, stopping at the first that fails."""
    heads = {"job-name": job_name, "array": "0-0", "output": str(log_file), "chdir": str(cwd), "partition": opts["partition"],
             "time": opts["time"], "cpus-per-task": opts["cpus_per_task"], "mem-per-cpu": f"{opts['mem_per_cpu_gb']}G",
             "gpus-per-node": opts["gpus"] or None, "qos": opts["qos"], "account": opts["account"], **opts["sbatch_args"]}
    out = ["#!/bin/bash", *(f"#SBATCH --{key}={value}" for key, value in heads.items() if value is not None), "set -e"]
    if opts["env_command"]:
        out.append(opts["env_command"])
    out += [shlex.join(line) for line in lines]
    return "\n".join(out) + "\n"


def submit(path: Path, after: list[str]) -> str:
    """sbatch the script after the given jobs succeed; its job id."""
    argv = ["sbatch", "--parsable", *([f"--dependency=afterok:{':'.join(after)}"] if after else []), str(path)]
    try:
        result = subprocess.run(argv, capture_output=True, text=True)
    except FileNotFoundError:
        raise FournilError("executor: slurm needs Slurm's sbatch on PATH; run the sweep from a node of the cluster") from None
    if result.returncode != 0:
        message = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise FournilError(f"sbatch refused {path} (exit {result.returncode}: {message}); check executor_options "
                           f"(partition, time, account, ...)")
    return result.stdout.strip().splitlines()[-1].split(";")[0]


def run(sweep: Sweep, runs_dir: Path, given: dict[str, Any], log: Callable[[str], None]) -> dict[str, str]:
    """Submit every unfinished task, wait for them all; return the error of each point that failed or could not run."""
    opts = execute.executor_options(given, OPTIONS, "slurm")
    todo = execute.tasks(sweep)
    folder = (sweep.folder / "slurm").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    jobs: dict[int, slurm.ArrayTask] = {}
    logs: dict[int, Path] = {}
    skipped = set()
    try:
        for i, task in enumerate(todo):
            if execute.finished(sweep, task):
                skipped.add(i)
                continue
            name = f"{i + 1:03d}-{task.point.name}-{task.until}"
            log_file = folder / f"{name}.%A.out"
            path = folder / f"{name}.sh"
            path.write_text(script(execute.steps(sweep, runs_dir, task, opts["processes"]), f"fournil-sweep-{sweep.name}-{name}",
                                   log_file, Path.cwd(), opts), encoding="utf-8")
            job = submit(path, [jobs[k].job for k in task.needs if k in jobs])
            jobs[i] = slurm.ArrayTask(job, 0)
            logs[i] = Path(str(log_file).replace("%A", job))
            log(f"sweep: {task.point.name} to {task.until}: Slurm job {job} (log: {logs[i]})")
    except BaseException:
        slurm.cancel([t.job for t in jobs.values()])
        raise
    if skipped:
        log(f"sweep: {len(skipped)} of {len(todo)} tasks already finished, not submitted")
    try:
        return _wait(sweep, todo, jobs, logs, opts["poll_seconds"], log)
    except KeyboardInterrupt:  # the jobs stop with the sweep; run it again to resume
        slurm.cancel([t.job for t in jobs.values()])
        raise


def _wait(sweep: Sweep, todo: list[execute.Task], jobs: dict[int, slurm.ArrayTask], logs: dict[int, Path],
          poll_seconds: float, log: Callable[[str], None]) -> dict[str, str]:
    errors: dict[str, str] = {}
    failed: set[int] = set()
    pending = set(jobs)
    watch = slurm.Watch()
    while pending:
        lost = watch.lost({jobs[i] for i in pending if not execute.finished(sweep, todo[i])})
        for i in sorted(pending):  # the tasks a task needs come before it
            task, why = todo[i], lost.get(jobs[i])
            failed_needs = [k for k in task.needs if k in failed]
            if failed_needs:  # Slurm would keep it pending for ever (DependencyNeverSatisfied)
                error = f"not run: {todo[failed_needs[0]].point.name}, whose stages it shares, failed"
                slurm.cancel([jobs[i].job])
            elif execute.finished(sweep, task):
                log(f"sweep: {task.point.name} done to {task.until} (Slurm job {jobs[i].job})")
                pending.discard(i)
                continue
            elif why:
                said = f"{execute.last_error(logs[i])} " if logs[i].is_file() else ""
                error = f"{said}(Slurm job {jobs[i].name} {why}; log: {logs[i]})"
                slurm.cancel([jobs[i].job])
            else:
                continue
            errors.setdefault(task.point.name, error)
            log(f"sweep: {task.point.name} {'' if failed_needs else 'failed: '}{error}")
            failed.add(i)
            pending.discard(i)
        if pending:
            time.sleep(poll_seconds)
    return errors
