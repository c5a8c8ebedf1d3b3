"""Mixture encoding as executor tasks: the same shards and plan whatever the executor, the number of
tasks and workers; an interrupted encode redoes only unfinished tasks; a Slurm or Ray task that fails,
is cancelled or never starts stops the stage with one line naming it and its logs, and the same
command then resumes."""

from __future__ import annotations

import json
import re
import shutil
import signal
from pathlib import Path

import pytest
import slurm_fake
from mixture_helpers import build_run, recipe

from fournil.errors import FournilError
from fournil.executors import RayExecutor
from fournil.mixture import encode
from fournil.runs import get_stage, run_stage, stage_inputs
from fournil.slurm import _expand

TRAIN = {"max_steps": 40, "global_batch_tokens": 1024}


def outputs(run_dir: Path) -> dict[str, bytes]:
    """The mixture's shards, plan and canaries, by path."""
    mixture = run_dir / "mixture"
    paths = sorted(mixture.glob("shards/*/*")) + [mixture / "plan.json", mixture / "canaries.json"]
    return {str(p.relative_to(mixture)): p.read_bytes() for p in paths}


def run(root: Path, run_dir: Path, **mixture) -> dict:
    return run_stage(recipe(root, parallel=True, train=TRAIN, mixture=mixture), run_dir, "mixture", log=lambda m: None)


@pytest.fixture(scope="session")  # session: the Ray tests, run last, use it too
def reference(tmp_path_factory):
    """One corpus file per group, encoded by one local worker: (root, its outputs)."""
    root = tmp_path_factory.mktemp("reference")
    run_dir = build_run(root, parallel_rows=20)
    manifest = run(root, run_dir, workers=1)
    assert manifest["figures"]["per_language"]["fr"]["documents"] == 180 + 20
    return root, outputs(run_dir)


def copy_run(root: Path, reference_root: Path, files: int = 3) -> Path:
    """The reference's documents in `files` corpus files per group (3 files: 9 corpus tasks and 2 parallel
    ones; 1 file: 3 and 2), and its tokenizer."""
    run_dir = build_run(root, files=files)
    shutil.rmtree(run_dir / "tokenizer")
    shutil.copytree(reference_root / "run" / "tokenizer", run_dir / "tokenizer")
    shutil.copy(reference_root / "pairs.tsv", root / "pairs.tsv")
    return run_dir


def test_more_tasks_and_workers_give_the_same_bytes(reference, tmp_path):
    reference_root, expected = reference
    run_dir = copy_run(tmp_path, reference_root)
    manifest = run(tmp_path, run_dir, workers=2)
    assert outputs(run_dir) == expected
    assert len(list((run_dir / "mixture" / "logs" / "logs").glob("task_*.log"))) == 11
    assert manifest["figures"]["encode_mb_per_s"] > 0 and not (run_dir / "mixture" / "work").exists()


def test_an_interrupted_encode_redoes_only_unfinished_tasks(reference, tmp_path, monkeypatch):
    reference_root, expected = reference
    run_dir = copy_run(tmp_path, reference_root)
    calls = []
    real = encode.EncodeShards.run

    def interrupted(self, data=None, rank=0, world_size=1):
        calls.append(rank)
        if rank == 4:
            raise KeyboardInterrupt  # the run is stopped in its fifth task
        return real(self, data, rank, world_size)

    monkeypatch.setattr(encode.EncodeShards, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, run_dir, workers=1)  # one worker: tasks run in this process, in order
    assert calls == [0, 1, 2, 3, 4]
    calls.clear()
    def counted(self, data=None, rank=0, world_size=1):
        calls.append(rank)
        return real(self, data, rank, world_size)

    monkeypatch.setattr(encode.EncodeShards, "run", counted)
    manifest = run(tmp_path, run_dir, workers=1)
    assert manifest["resumed"] is True and calls == list(range(4, 11))
    assert outputs(run_dir) == expected


def test_workers_and_executor_do_not_change_the_fingerprint(tmp_path):
    def fingerprint(**mixture):
        return stage_inputs(recipe(tmp_path, mixture=mixture), tmp_path, get_stage("mixture"), upstream={})

    assert fingerprint() == fingerprint(workers=3, executor="slurm", executor_options={"partition": "x"})
    assert fingerprint() != fingerprint(encode_batch=10)


def corrupt(run_dir: Path) -> tuple[Path, bytes]:
    """Damage the fr-news corpus file of a one-file-per-group run (task 0: fr-news sorts first); return it and its bytes, to repair it."""
    path = run_dir / "corpus" / "train" / "fr" / "fr-news" / "00000.jsonl.zst"
    good = path.read_bytes()
    path.write_bytes(b"not zstd at all")
    return path, good


def test_a_failed_slurm_task_stops_the_stage_and_the_same_command_resumes(reference, tmp_path, monkeypatch):
    reference_root, expected = reference
    run_dir = copy_run(tmp_path, reference_root, files=1)
    state = slurm_fake.install(tmp_path, monkeypatch)
    path, good = corrupt(run_dir)
    options = {"executor": "slurm", "executor_options": {"poll_seconds": 0.2, "partition": "test"}}
    with pytest.raises(FournilError) as error:
        run(tmp_path, run_dir, **options)
    message = str(error.value)
    logs = run_dir / "mixture" / "work" / "logs"
    assert message.startswith(f"mixture encode: 1 of 5 tasks did not finish: task 0 (Slurm job 100_0) FAILED: FournilError: {path} is corrupt")
    assert f"(log: {logs / 'slurm_logs' / '100_0.out'}, {logs / 'logs' / 'task_00000.log'})" in message
    assert message.endswith("the 4 finished tasks are kept: fix the cause, then run the same command again") and "\n" not in message
    assert sorted(p.name for p in (logs / "completions").iterdir()) == ["00001", "00002", "00003", "00004"]
    path.write_bytes(good)
    manifest = run(tmp_path, run_dir, **options)  # the same command
    assert [s["array"] for s in slurm_fake.submitted(state)] == [[0, 4], [0, 0]]  # the second job: task 0 alone
    assert manifest["resumed"] is True and outputs(run_dir) == expected


@pytest.mark.parametrize("forced, why", [("CANCELLED by 1000", "CANCELLED"),
                                         ("PENDING DependencyNeverSatisfied", "pending forever: DependencyNeverSatisfied")])
def test_a_cancelled_or_never_starting_slurm_task_stops_the_stage(reference, tmp_path, monkeypatch, forced, why):
    reference_root, _ = reference
    run_dir = copy_run(tmp_path, reference_root)
    state = slurm_fake.install(tmp_path, monkeypatch)
    monkeypatch.setenv("FAKE_SLURM_STATES", json.dumps({i: "RUNNING" for i in range(11)} | {7: forced}))  # no task runs
    with pytest.raises(FournilError, match=re.escape(f"1 of 11 tasks did not finish: task 7 (Slurm job 100_7) {why} (log: ")):
        run(tmp_path, run_dir, executor="slurm", executor_options={"poll_seconds": 0.2})
    assert (state / "cancelled").read_text() == "100\n"  # what is left of the job is cancelled


def test_slurm_job_ids_of_array_tasks():
    assert _expand("12_3") == [("12", 3)]
    assert _expand("12_[0-2,5%4]") == [("12", 0), ("12", 1), ("12", 2), ("12", 5)]
    assert _expand("12_7.batch") == [("12", 7)] and _expand("12") == []


def test_ray_gives_the_same_bytes_and_a_task_that_raises_stops_it(reference, tmp_path, ray_local):
    reference_root, expected = reference
    run_dir = copy_run(tmp_path, reference_root, files=1)
    path, good = corrupt(run_dir)
    options = {"executor": "ray", "workers": 2, "executor_options": {"mem_per_cpu_gb": 0.25}}
    with pytest.raises(FournilError) as error:
        run(tmp_path, run_dir, **options)
    logs = run_dir / "mixture" / "work" / "logs"
    assert str(error.value).startswith(f"mixture encode: 1 of 5 tasks did not finish: task 0 failed: FournilError: {path} is corrupt")
    assert f"(log: {logs / 'logs' / 'task_00000.log'})" in str(error.value)
    done = {p.name: p.stat().st_mtime_ns for p in (logs / "logs").glob("task_*.log")}
    assert len(done) == 5
    path.write_bytes(good)
    manifest = run(tmp_path, run_dir, **options)
    assert manifest["resumed"] is True and outputs(run_dir) == expected
    kept = run_dir / "mixture" / "logs" / "logs"
    assert [name for name, mtime in done.items() if (kept / name).stat().st_mtime_ns != mtime] == ["task_00000.log"]


def test_a_ray_rank_s_process_dies_at_sigterm_whatever_handler_it_inherited(tmp_path):
    """datatrove forks the ranks' processes from a Ray worker, which has a SIGTERM handler of its own."""
    executor = RayExecutor(pipeline=[lambda data, rank, world_size: iter([])], tasks=1, logging_dir=str(tmp_path))
    inherited = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        executor._run_for_rank(0)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, inherited)
    assert (tmp_path / "completions" / "00000").is_file()


def test_a_ray_task_no_node_can_hold_is_refused_before_it_waits_for_ever(tmp_path, ray_local):
    run_dir = build_run(tmp_path)
    with pytest.raises(FournilError, match=r"a task asks for 1 CPU, 1000.00 GB of memory .* so it would never start; lower "
                                           r"executor_options.mem_per_cpu_gb"):
        run_stage(recipe(tmp_path, train=TRAIN, mixture={"executor": "ray", "executor_options": {"mem_per_cpu_gb": 1000}}),
                  run_dir, "mixture", log=lambda m: None)
