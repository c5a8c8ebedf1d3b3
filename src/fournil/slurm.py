"""What Slurm says about the array tasks a stage submitted, so a task that failed, was cancelled or
will never start stops the stage instead of leaving it waiting for a completion marker forever.

`sacct` gives the state of tasks that ended (it needs Slurm's accounting); `squeue` the state and
pending reason of those still queued. A task is lost when it is in a failed end state, when it is
pending for a reason Slurm never resolves by itself, or when neither command lists it for
`LOST_AFTER` polls in a row while its completion marker is still missing (it ended without one, or
Slurm forgot it).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

FAILED = ("FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE", "REVOKED")
NEVER_STARTS = ("DependencyNeverSatisfied", "BadConstraints", "InvalidAccount", "InvalidQOS", "PartitionTimeLimit",
                "PartitionNodeLimit")  # pending reasons that wait for a change to the job, not for resources
LOST_AFTER = 3


@dataclass(frozen=True)
class ArrayTask:
    job: str
    index: int

    @property
    def name(self) -> str:
        return f"{self.job}_{self.index}"


def _expand(job_id: str) -> list[tuple[str, int]]:
    """'12_3' → [('12', 3)]; '12_[0-2,5%4]' → [('12', 0), ('12', 1), ('12', 2), ('12', 5)]; a plain id → []."""
    match = re.fullmatch(r"(\d+)_(\d+|\[[^\]]*\])(?:\.\S+)?", job_id.strip())
    if not match:
        return []
    job, tail = match.groups()
    if not tail.startswith("["):
        return [(job, int(tail))]
    indices = []
    for part in tail[1:-1].split("%")[0].split(","):
        lo, _, hi = part.partition("-")
        if lo.isdigit():
            indices += range(int(lo), int(hi or lo) + 1)
    return [(job, i) for i in indices]


def _run(command: list[str]) -> str | None:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout if result.returncode == 0 else None


def states(jobs: list[str]) -> dict[ArrayTask, tuple[str, str]]:
    """(state, pending reason) of every array task of `jobs` that sacct or squeue lists; squeue wins for queued ones."""
    found: dict[ArrayTask, tuple[str, str]] = {}
    ids = ",".join(jobs)
    accounted = _run(["sacct", "-j", ids, "-X", "-n", "-P", "-o", "JobID,State"])
    for line in (accounted or "").splitlines():
        job_id, _, state = line.partition("|")
        for job, index in _expand(job_id):
            found[ArrayTask(job, index)] = (state.split()[0] if state.split() else "", "")
    queued = _run(["squeue", "-h", "-r", "-j", ids, "-o", "%i|%T|%r"])
    for line in (queued or "").splitlines():
        job_id, _, rest = line.partition("|")
        state, _, reason = rest.partition("|")
        for job, index in _expand(job_id):
            found[ArrayTask(job, index)] = (state.strip(), reason.strip())
    return found


class Watch:
    """Polls Slurm for the tasks not yet marked complete; `lost()` names those that will not finish."""

    def __init__(self) -> None:
        self.unseen: dict[ArrayTask, int] = {}

    def lost(self, pending: set[ArrayTask]) -> dict[ArrayTask, str]:
        """Of the `pending` tasks (no completion marker yet), those that will never get one, with why."""
        if not pending:
            return {}
        now = states(sorted({t.job for t in pending}))
        lost = {}
        for task in sorted(pending, key=lambda t: (t.job, t.index)):
            state, reason = now.get(task, ("", ""))
            if state in FAILED:
                lost[task] = state
            elif state == "PENDING" and reason in NEVER_STARTS:
                lost[task] = f"pending forever: {reason}"
            elif state in ("", "COMPLETED"):
                self.unseen[task] = self.unseen.get(task, 0) + 1
                if self.unseen[task] >= LOST_AFTER:
                    lost[task] = "ended without its completion marker" if state else "no longer known to Slurm"
            else:
                self.unseen[task] = 0
        return lost


def cancel(jobs: list[str]) -> None:
    """Cancel what is left of the jobs (best effort: the stage stops either way)."""
    if jobs:
        _run(["scancel", *jobs])
