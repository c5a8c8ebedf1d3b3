"""Running a sweep's points: each point's stages through `runs.run_all`, in its own run folder,
after taking every finished stage it shares from the point that ran it, and the kept work of the
first stage it does not share from a point of the same lineage (a ratio sweep's mixtures start from
the first point's, keep its shards and plan again).

The work is cut into tasks, a point's stages up to where others branch off it: a ratio sweep's
first task is the first point's corpus and tokenizer, its second that point's mixture, and every
other point's task waits for those two. Tasks run one after another in this process (`jobs` 1), or up to `jobs` at once as
`fournil sweep SWEEP.yaml --point P --until S` subprocesses, the commands `--commands` prints and
Slurm jobs or Ray tasks run on a cluster (`on_slurm`, `on_ray`). A failed task is reported with its error and the tasks that need it are not run; the
others go on. Killed and started again, a sweep skips finished stages and resumes interrupted ones,
since each point is an ordinary run folder.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from fournil.errors import FournilError
from fournil.runs import STAGE_NAMES, get_stage, keeps_work, run_all
from fournil.sweep.points import Point, Sweep
from fournil.sweep.share import finished_as, link_stage, own_copies

SWEEP_FILE = "sweep.yaml"


@dataclass
class Task:
    point: Point
    until: str
    start: str  # the first stage the task runs (the stages before it were run by earlier tasks)
    needs: list[int] = field(default_factory=list)  # indices of the tasks that must finish first


def tasks(sweep: Sweep) -> list[Task]:
    """The sweep's tasks in an order that respects what they need."""
    stages = STAGE_NAMES[:STAGE_NAMES.index(sweep.last_stage) + 1]
    first_own = {p.name: next(k for k, s in enumerate(stages) if sweep.owner(s, p) is p) for p in sweep.points}
    cuts: dict[str, set[int]] = {p.name: set() for p in sweep.points}
    lenders: dict[tuple[str, int], str] = {}  # (point, stage index) → the point whose kept work there it starts from
    for p in sweep.points:
        if first_own[p.name] > 0:  # it takes stages up to there from their owner: that owner's task ends there
            cuts[sweep.owner(stages[first_own[p.name] - 1], p).name].add(first_own[p.name] - 1)
        for k in range(first_own[p.name], len(stages)):
            lender = sweep.lender(stages[k], p)
            if lender is not p:  # its stage k starts from the lender's: the lender's task ends there and p's starts there
                lenders[(p.name, k)] = lender.name
                cuts[lender.name].add(k)
                if k > first_own[p.name]:
                    cuts[p.name].add(k - 1)
    made: dict[tuple[str, int], int] = {}  # (point, stage index) → the task that runs it
    out: list[Task] = []
    for p in sweep.points:
        start, previous = first_own[p.name], None
        for end in sorted({*cuts[p.name], len(stages) - 1}):
            task = Task(p, stages[end], stages[start])
            if previous is not None:
                task.needs.append(previous)
            elif start > 0:
                task.needs.append(made[(sweep.owner(stages[start - 1], p).name, start - 1)])
            if (p.name, start) in lenders and made[(lenders[(p.name, start)], start)] not in task.needs:
                task.needs.append(made[(lenders[(p.name, start)], start)])
            out.append(task)
            previous = len(out) - 1
            for k in range(start, end + 1):
                made[(p.name, k)] = previous
            start = end + 1
    return out


def run_point(sweep: Sweep, point: Point, until: str, log: Callable[[str], None]) -> dict[str, dict]:
    """Take the finished stages the point shares with others, and the kept work of the first one it does
    not share from a finished point of its lineage, then run the rest of its stages to `until`."""
    stages = STAGE_NAMES[:STAGE_NAMES.index(until) + 1]
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 alone touches the folders
        _take_shared(sweep, point, stages, log)
    return run_all(point.recipe, sweep.folder / point.name, until=until, log=log)


def _take_shared(sweep: Sweep, point: Point, stages: list[str], log: Callable[[str], None]) -> None:
    run_dir = sweep.folder / point.name
    for stage in stages:
        fingerprint = point.fingerprints[stage]
        if finished_as(run_dir / stage) == fingerprint:
            continue
        others = [sweep.owner(stage, point), *sweep.points]
        source = next((sweep.folder / q.name / stage for q in others
                       if q is not point and finished_as(sweep.folder / q.name / stage) == fingerprint), None)
        if source is not None:
            log(f"[{stage}] shared with {source.parent.name} ({link_stage(source, run_dir / stage)})")
            continue
        lender = sweep.lender(stage, point)
        lent = sweep.folder / lender.name / stage
        if lender is not point and finished_as(lent) == lender.fingerprints[stage] and not keeps_work(point.recipe, run_dir, stage):
            log(f"[{stage}] starts from {lender.name}'s, keeping its {get_stage(stage).kept} ({link_stage(lent, run_dir / stage)})")
        break
    for stage in stages:
        folder = run_dir / stage
        if folder.is_dir() and finished_as(folder) != point.fingerprints[stage] and keeps_work(point.recipe, run_dir, stage):
            if own_copies(folder, get_stage(stage).kept):
                log(f"[{stage}] resumes here: its files shared with other points were copied first")


def command(sweep: Sweep, runs_dir: Path, task: Task) -> list[str]:
    """The command that runs one task on its own (a subprocess here, a job on a cluster)."""
    return ["fournil", "sweep", str(sweep.folder / SWEEP_FILE), "--runs-dir", str(runs_dir), "--point", task.point.name,
            "--until", task.until]


def finished(sweep: Sweep, task: Task) -> bool:
    """Whether every stage of the task's point up to its `until` is finished as planned (a sweep run again skips it)."""
    stages = STAGE_NAMES[:STAGE_NAMES.index(task.until) + 1]
    return all(finished_as(sweep.folder / task.point.name / s) == task.point.fingerprints[s] for s in stages)


def steps(sweep: Sweep, runs_dir: Path, task: Task, processes: int) -> list[list[str]]:
    """The commands that run a task, in order: one, or with `processes` above 1 and the point's training in the
    task, its stages before train, then train alone under torchrun (one process a device), then the rest."""
    stages = STAGE_NAMES[STAGE_NAMES.index(task.start):STAGE_NAMES.index(task.until) + 1]
    python = [sys.executable, "-m"]
    if processes <= 1 or "train" not in stages:
        return [python + command(sweep, runs_dir, task)]
    out = []
    if stages[0] != "train":
        out.append(python + command(sweep, runs_dir, Task(task.point, STAGE_NAMES[STAGE_NAMES.index("train") - 1], task.start)))
    torchrun = ["torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", "-m"]
    out.append(python + torchrun + command(sweep, runs_dir, Task(task.point, "train", "train")))
    if task.until != "train":
        out.append(python + command(sweep, runs_dir, task))
    return out


def commands(sweep: Sweep, runs_dir: Path) -> list[str]:
    """One line per task: its number, the tasks it waits for, its command."""
    lines = []
    for i, task in enumerate(tasks(sweep), 1):
        after = ",".join(str(k + 1) for k in task.needs) or "-"
        lines.append(f"{i}\t{after}\t{shlex.join(command(sweep, runs_dir, task))}")
    return lines


def die_with(parent: int) -> Callable[[], None]:
    """In a worker: be stopped (SIGTERM: training writes a checkpoint) when the sweep dies, even by kill -9. Linux only."""
    def arrange() -> None:
        if sys.platform.startswith("linux"):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
            if os.getppid() != parent:  # the sweep died before the call
                os._exit(1)
    return arrange


def last_error(log_file: Path, start: int = 0) -> str:
    """The error a worker printed to its log after byte `start` (its own run): fournil's one line, else its last line."""
    try:
        with open(log_file, "rb") as f:
            f.seek(start)
            lines = [line.strip() for line in f.read().decode(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "failed (no log)"
    errors = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
    return errors[-1] if errors else (lines[-1] if lines else "failed")


def run(sweep: Sweep, runs_dir: Path, jobs: int, log: Callable[[str], None]) -> dict[str, str]:
    """Run every task; return the error of each point that failed or could not run."""
    todo = tasks(sweep)
    state = ["waiting"] * len(todo)
    errors: dict[str, str] = {}
    running: dict[int, tuple[subprocess.Popen, float, int]] = {}  # task → its process, start time, log offset
    logs = sweep.folder / "logs"
    if jobs > 1:
        logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if jobs > 1 and "OMP_NUM_THREADS" not in env:  # the points share the cores instead of each taking them all
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))

    def finish(i: int, error: str | None, seconds: float) -> None:
        task = todo[i]
        state[i] = "failed" if error else "done"
        if error:
            errors.setdefault(task.point.name, error)
            log(f"sweep: {task.point.name} failed: {error}")
        else:
            log(f"sweep: {task.point.name} done to {task.until} in {seconds:.0f} s")

    try:
        while "waiting" in state or running:
            for i, task in enumerate(todo):
                failed = [k for k in task.needs if state[k] == "failed"]
                if state[i] == "waiting" and failed:
                    state[i] = "failed"
                    errors.setdefault(task.point.name, f"not run: {todo[failed[0]].point.name}, whose stages it shares, failed")
            ready = [i for i, t in enumerate(todo) if state[i] == "waiting" and all(state[k] == "done" for k in t.needs)]
            if not ready and not running:
                break
            if jobs == 1:
                for i in ready[:1]:
                    task, t0 = todo[i], time.time()
                    state[i] = "running"
                    log(f"sweep: {task.point.name} to {task.until}")
                    try:
                        run_point(sweep, task.point, task.until, lambda m, p=task.point.name: log(f"[{p}] {m}"))
                        finish(i, None, time.time() - t0)
                    except FournilError as error:
                        finish(i, " ".join(line.strip() for line in str(error).splitlines()) or type(error).__name__, time.time() - t0)
                    except Exception as error:  # a bug: its traceback goes to the terminal, and the other points go on
                        traceback.print_exc()
                        finish(i, f"{type(error).__name__}: {error}", time.time() - t0)
                continue
            for i in ready[:max(0, jobs - len(running))]:
                task = todo[i]
                state[i] = "running"
                argv = [sys.executable, "-m", *command(sweep, runs_dir, task)]
                log_file = logs / f"{task.point.name}.log"
                log(f"sweep: {task.point.name} to {task.until} (log: {log_file})")
                start = log_file.stat().st_size if log_file.is_file() else 0
                with open(log_file, "a", encoding="utf-8") as out:
                    process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, preexec_fn=die_with(os.getpid()))
                running[i] = (process, time.time(), start)
            time.sleep(0.2)
            for i, (process, t0, start) in list(running.items()):
                if process.poll() is not None:
                    del running[i]
                    error = None if process.returncode == 0 else last_error(logs / f"{todo[i].point.name}.log", start)
                    finish(i, error, time.time() - t0)
    finally:
        for process, _, _ in running.values():  # interrupted: the workers checkpoint and stop with the sweep
            process.send_signal(signal.SIGTERM)
        for process, _, _ in running.values():
            process.wait()
    return errors


def executor_options(given: dict[str, Any], defaults: dict[str, Any], kind: str) -> dict[str, Any]:
    """A cluster executor's settings (`on_slurm.OPTIONS`, `on_ray.OPTIONS`): the defaults, with what the sweep gives,
    each of the default's type."""
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise FournilError(f"executor_options {unknown}: {kind} takes {', '.join(defaults)}")
    for key, value in given.items():
        want = defaults[key]
        numeric = isinstance(want, int | float) and not isinstance(want, bool)
        if (numeric and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0)) or \
                (isinstance(want, dict) and not isinstance(value, dict)):
            raise FournilError(f"executor_options.{key}: {value!r} is not {'a number ≥ 0' if numeric else 'a mapping'}")
    return {**defaults, **given}
