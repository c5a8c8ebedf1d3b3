"""`fournil sweep --executor slurm|ray`: every task a job (a fake Slurm on PATH) or a Ray task (a local
instance) that waits for the tasks it needs; a failed task is reported with its error line and log, the
tasks that need it are not run, the others finish; run again, only unfinished tasks are started."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fournil.errors import FournilError
from fournil.runs import read_manifest
from fournil.sweep import config, execute, on_ray, on_slurm
from fournil.sweep.points import expand

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "tests" / "recipes" / "sweep-mini.yaml"
# tokenizer shares × French share, to the mixture: 7 tasks; the second tokenizer names a language the recipe lacks
VARY = ["--vary", "tokenizer.shares={fr: 0.7, en: 0.3},{fr: 0.5, de: 0.5}", "--vary", "languages.fr=0.3,0.7"]
ARGS = [str(RECIPE), "--proxy", "--proxy-size", "tiny", *VARY, "--until", "mixture"]
GOOD, BAD = ["shares-fr0.7-en0.3_fr-0.3", "shares-fr0.7-en0.3_fr-0.7"], ["shares-fr0.5-de0.5_fr-0.3", "shares-fr0.5-de0.5_fr-0.7"]
NOT_RUN = f"not run: {BAD[0]}, whose stages it shares, failed"


def sweep_of(runs: Path, until: str = "mixture", overrides: list[str] = ()):
    cfg, base = config.build(RECIPE, VARY[1::2], None, False, "tiny", list(overrides), None, until)
    made = expand(cfg, base, runs)
    if until == "mixture":
        assert [len(t.needs) for t in execute.tasks(made)] == [0, 1, 1, 2, 1, 1, 2]
    return made


def check_outcome(made, errors: dict[str, str]) -> None:
    assert set(errors) == set(BAD)
    assert errors[BAD[0]].startswith("tokenizer.shares names ['de']") and "log: " in errors[BAD[0]]
    assert errors[BAD[1]] == NOT_RUN
    corpus = {(made.folder / p / "corpus" / "manifest.json").stat().st_ino for p in GOOD + BAD[:1]}
    assert len(corpus) == 1  # one corpus, shared
    mixtures = [read_manifest(made.folder / p / "mixture") for p in GOOD]
    assert [m["figures"]["shards_encoded"] > 0 for m in mixtures] == [True, False]  # the second kept the first's shards
    assert not (made.folder / BAD[1] / "tokenizer").exists()


def test_slurm_submits_a_job_per_task_after_those_it_needs_and_reports_failures(tmp_path, monkeypatch):
    import slurm_fake

    state = slurm_fake.install(tmp_path, monkeypatch)
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "src"))  # the jobs run this checkout's fournil
    runs = tmp_path / "runs"

    def sweep(*more: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "fournil", "sweep", *ARGS, "--runs-dir", str(runs), "--executor", "slurm",
                               "--executor-option", "poll_seconds=0.05", "--executor-option", "partition=gpu", *more],
                              capture_output=True, text=True)

    first = sweep()
    assert first.returncode == 2, first.stderr[-3000:]
    made = sweep_of(runs)
    jobs = slurm_fake.submitted(state)
    assert len(jobs) == 7 and all(j["array"] == [0, 0] for j in jobs)
    ids = [str(j["job"]) for j in jobs]
    assert [j["after"] for j in jobs] == [[], ids[:1], ids[1:2], ids[1:3], ids[:1], ids[4:5], ids[4:6]]
    script = (made.folder / "slurm" / f"002-{GOOD[0]}-tokenizer.sh").read_text()
    assert "#SBATCH --partition=gpu\n" in script and f"--point {GOOD[0]} --until tokenizer" in script
    log = made.folder / "slurm" / f"005-{BAD[0]}-tokenizer.{ids[4]}.out"
    assert f"{BAD[0]} failed: tokenizer.shares names ['de']" in first.stderr and f"log: {log})" in first.stderr
    assert f"sweep: {BAD[1]} {NOT_RUN}\n" in first.stderr
    errors = {p["name"]: p["error"] for p in json.loads((made.folder / "sweep.json").read_text())["points"] if p["error"]}
    check_outcome(made, errors)
    assert f"Slurm job {ids[4]}_0 FAILED; log: {log}" in errors[BAD[0]]
    assert ids[5] in (state / "cancelled").read_text()  # the job that could never start was cancelled
    second = sweep()  # again: the finished tasks are not submitted
    assert second.returncode == 2 and "4 of 7 tasks already finished, not submitted" in second.stderr
    assert len(slurm_fake.submitted(state)) == 10


def test_ray_runs_a_task_per_task_after_those_it_needs_and_reports_failures(tmp_path, ray_local, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "src"))
    runs = tmp_path / "runs"
    made = sweep_of(runs, "train", ["train.max_steps=2"])  # each good point trains under torchrun, 2 gloo processes
    made.folder.mkdir(parents=True)
    config.write(made.config, made.folder / execute.SWEEP_FILE)
    said = []
    errors = on_ray.run(made, runs, {"processes": 2}, said.append)
    check_outcome(made, errors)
    assert f"sweep: {GOOD[1]} done to train" in said and f"log: {made.folder.resolve() / 'logs' / (BAD[0] + '.log')})" in errors[BAD[0]]
    trained = [read_manifest(made.folder / p / "train")["figures"] for p in GOOD]
    assert [(f["world_size"], f["device"]["processes"], f["tokens"] > 0) for f in trained] == [(2, 2, True)] * 2
    said.clear()
    assert on_ray.run(made, runs, {"processes": 2}, said.append) == errors  # again: only the failed point's tasks start
    assert f"sweep: {len(execute.tasks(made)) - 4} of {len(execute.tasks(made))} tasks already finished, not started" in said


def test_a_multi_process_point_trains_under_torchrun_and_runs_its_other_stages_alone(tmp_path):
    cfg, base = config.build(RECIPE, ["languages.fr=0.3,0.7"], None, False, "tiny", [], None, "evaluate")
    made = expand(cfg, base, tmp_path)
    todo = execute.tasks(made)
    assert [(t.start, t.until) for t in todo] == [("corpus", "tokenizer"), ("mixture", "mixture"), ("train", "evaluate"),
                                                   ("mixture", "evaluate")]
    assert execute.steps(made, tmp_path, todo[0], 2) == [[sys.executable, "-m", *execute.command(made, tmp_path, todo[0])]]
    last = execute.steps(made, tmp_path, todo[3], 2)
    assert [line[line.index("--until") + 1] for line in last] == ["mixture", "train", "evaluate"]
    assert last[1][:6] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m"]
    assert [len(s) for s in (execute.steps(made, tmp_path, todo[2], 2), execute.steps(made, tmp_path, todo[3], 1))] == [2, 1]


def test_cluster_options_are_checked_before_anything_runs(tmp_path):
    result = subprocess.run([sys.executable, "-m", "fournil", "sweep", *ARGS, "--runs-dir", str(tmp_path), "--executor", "slurm",
                             "--executor-option", "partiton=gpu"], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert result.returncode == 2 and "executor_options ['partiton']: slurm takes partition" in result.stderr
    assert "Traceback" not in result.stderr and not any(tmp_path.glob("*/*/corpus"))
    for option, error in (({"poll_seconds": "soon"}, "executor_options.poll_seconds: 'soon' is not a number ≥ 0"),
                          ({"sbatch_args": "gpu"}, "executor_options.sbatch_args: 'gpu' is not a mapping")):
        with pytest.raises(FournilError, match=error):
            on_slurm.run(sweep_of(tmp_path), tmp_path, option, print)
    with pytest.raises(FournilError, match=r"executor_options \['partition'\]: ray takes address"):
        on_ray.run(sweep_of(tmp_path), tmp_path, {"partition": "gpu"}, print)
    jobs = subprocess.run([sys.executable, "-m", "fournil", "sweep", *ARGS, "--runs-dir", str(tmp_path), "--executor", "ray",
                           "--jobs", "2"], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert jobs.returncode == 2 and "--jobs is for the local executor" in jobs.stderr
