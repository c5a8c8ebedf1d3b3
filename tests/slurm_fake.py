"""A fake Slurm on PATH for tests: `sbatch` runs every array task of the script it gets, at once and
for real (through `srun`, `launch_pickled_pipeline`), and records each task's state; `sacct` and
`squeue` report those states; `scancel` records what it cancelled.

FAKE_SLURM_STATES (JSON, array index → state) makes tasks not run but end in that state instead:
"CANCELLED by 1000", "RUNNING" (for ever), or "PENDING DependencyNeverSatisfied" (pending, with that reason).
`--dependency=afterok:J1:J2` holds a job pending for ever (DependencyNeverSatisfied) unless every
task of those jobs completed; `--parsable` prints the job id alone.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

SBATCH = r'''
import json, os, re, subprocess, sys
from pathlib import Path

state = Path(os.environ["FAKE_SLURM_DIR"])
script_path = sys.argv[-1]
script = Path(script_path).read_text()
env = dict(os.environ)
for arg in sys.argv[1:-1]:
    if arg.startswith("--export="):
        env.update(kv.split("=", 1) for kv in arg[len("--export="):].split(",")[1:])
lo, hi = map(int, re.search(r"#SBATCH --array=(\d+)-(\d+)", script).groups())
output = re.search(r"#SBATCH --output=(\S+)", script).group(1)
counter = state / "next_job"
job = int(counter.read_text()) if counter.exists() else 100
counter.write_text(str(job + 1))
forced = json.loads(os.environ.get("FAKE_SLURM_STATES", "{}"))
name = re.search(r"#SBATCH --job-name=(\S+)", script).group(1)
after = [a.split(":")[1:] for a in sys.argv[1:-1] if a.startswith("--dependency=afterok:")]
blocked = any(any(v != "COMPLETED" for v in json.loads((state / f"{j}.json").read_text()).values()) for j in sum(after, []))
states = {}
for i in range(lo, hi + 1):
    if str(i) in forced or blocked:
        states[i] = forced.get(str(i), "PENDING DependencyNeverSatisfied")
        continue
    with open(output.replace("%A", str(job)).replace("%a", str(i)), "w") as log:
        task_env = {**env, "SLURM_ARRAY_TASK_ID": str(i), "SLURM_ARRAY_JOB_ID": str(job), "SLURM_JOB_ID": str(job + 1000 + i),
                    "SLURM_NODELIST": "localhost"}
        code = subprocess.run(["bash", script_path], env=task_env, stdout=log, stderr=subprocess.STDOUT).returncode
    states[i] = "COMPLETED" if code == 0 else "FAILED"
(state / f"{job}.json").write_text(json.dumps(states))
with open(state / "submitted.jsonl", "a") as f:
    f.write(json.dumps({"job": job, "array": [lo, hi], "name": name, "after": sum(after, [])}) + "\n")
print(job if "--parsable" in sys.argv else f"Submitted batch job {job}")
'''

REPORT = r'''
import json, os, sys
from pathlib import Path

state = Path(os.environ["FAKE_SLURM_DIR"])
jobs = sys.argv[sys.argv.index("-j") + 1].split(",")
queued = Path(sys.argv[0]).name == "squeue"
for job in jobs:
    path = state / f"{job}.json"
    for i, value in (json.loads(path.read_text()).items() if path.exists() else []):
        name, _, reason = value.partition(" ")
        if queued and name in ("PENDING", "RUNNING"):
            print(f"{job}_{i}|{name}|{reason or 'None'}")
        elif not queued:
            print(f"{job}_[{i}]|{value}" if name == "PENDING" else f"{job}_{i}|{value}")
'''

SRUN = r'''
import os, sys

args = sys.argv[1:]
while args and args[0].startswith("-"):
    args = args[2:] if args[0] == "-n" else args[1:]
os.execvp(args[0], args)
'''

SCONTROL = r'''
import sys

print(sys.argv[-1])
'''

SCANCEL = r'''
import os, sys
from pathlib import Path

with open(Path(os.environ["FAKE_SLURM_DIR"]) / "cancelled", "a") as f:
    f.write(" ".join(sys.argv[1:]) + "\n")
'''


def install(root: Path, monkeypatch) -> Path:
    """Put the fake commands first on PATH (datatrove's `launch_pickled_pipeline` next); return the state folder."""
    bin_dir, state = root / "fake-slurm-bin", root / "fake-slurm-state"
    bin_dir.mkdir()
    state.mkdir()
    for name, code in (("sbatch", SBATCH), ("sacct", REPORT), ("squeue", REPORT), ("srun", SRUN),
                       ("scontrol", SCONTROL), ("scancel", SCANCEL)):
        path = bin_dir / name
        path.write_text(f"#!{sys.executable}\n{code}")
        path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM_DIR", str(state))
    return state


def submitted(state: Path) -> list[dict]:
    path = state / "submitted.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
