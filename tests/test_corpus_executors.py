"""The corpus stage on datatrove's cluster executors: Ray (a local instance) and Slurm (the submission, and a fake Slurm)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import zstandard
from datatrove.executor import SlurmPipelineExecutor

from fournil.corpus.pipeline import CurateFiles
from fournil.errors import FournilError
from fournil.executors import make_executor, run_executor
from fournil.recipe import parse_recipe
from fournil.runs import run_stage

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


def _recipe(root: Path, executor: str, options: dict):
    for lang in ("fr", "en"):
        with open(SAMPLE / lang / "gnome-user-docs.jsonl.zst", "rb") as f:
            lines = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f), encoding="utf-8").readlines()[:20]
        (root / lang).mkdir(exist_ok=True)
        for i in range(2):
            (root / lang / f"part{i}.jsonl").write_text("".join(lines[i::2]), encoding="utf-8")
    return parse_recipe({
        "name": "x", "languages": {"fr": 0.5, "en": 0.5},
        "sources": [{"name": lang, "path": lang, "lang": lang, "license": "CC-BY-SA-3.0"} for lang in ("fr", "en")],
        "corpus": {"workers": 2, "tasks": 2, "executor": executor, "executor_options": options},
    }, root)


@pytest.fixture(scope="session")  # session: the Ray tests, run last, use it too
def local(tmp_path_factory):
    """The stage on the local executor: (its folder of sources, its manifest)."""
    root = tmp_path_factory.mktemp("local")
    return root, run_stage(_recipe(root, "local", {}), root / "local", "corpus", log=lambda m: None)


def test_ray_executor_gives_the_local_corpus(local, tmp_path, ray_local):
    root, local = local
    remote = run_stage(_recipe(root, "ray", {"mem_per_cpu_gb": 0.25}), tmp_path / "ray", "corpus", log=lambda m: None)
    assert remote["figures"]["per_language"] == local["figures"]["per_language"]
    assert remote["figures"]["per_language"]["fr"]["documents"] > 0
    assert remote["figures"]["steps"] == local["figures"]["steps"]
    assert (tmp_path / "ray" / "corpus" / "stats.json").read_bytes() == (root / "local" / "corpus" / "stats.json").read_bytes()
    assert remote["figures"]["tasks"] == 2 and (tmp_path / "ray" / "corpus" / "logs" / "pass1" / "logs" / "task_00001.log").is_file()


def test_slurm_executor_is_built_from_the_recipe_options(tmp_path):
    options = {"partition": "cpu-long", "time": "02:00:00", "cpus_per_task": 2, "mem_per_cpu_gb": 4,
               "sbatch_args": {"account": "lang"}, "venv_path": "/shared/venv/bin/activate"}
    step = CurateFiles({"tasks": [[]] * 12})
    executor = make_executor([step], 12, 2, tmp_path / "logs", "slurm", options, "fournil-corpus-pass1")
    assert isinstance(executor, SlurmPipelineExecutor) and executor.poll_seconds == 30
    assert (executor.tasks, executor.partition, executor.time, executor.cpus_per_task) == (12, "cpu-long", "02:00:00", 2)
    assert executor.pipeline == [step] and Path(executor.logging_dir.path) == tmp_path / "logs"
    script = executor.get_launch_file_contents(executor.get_sbatch_args(max_array=12), "python run.py")
    for line in ("#SBATCH --partition=cpu-long", "#SBATCH --time=02:00:00", "#SBATCH --cpus-per-task=2",
                 "#SBATCH --mem-per-cpu=4G", "#SBATCH --job-name=fournil-corpus-pass1", "#SBATCH --array=0-11",
                 "#SBATCH --account=lang", "source /shared/venv/bin/activate"):
        assert line in script, line
    defaults = make_executor([step], 3, 2, tmp_path / "logs2", "slurm", {}, "j")
    assert (defaults.partition, defaults.time) == ("cpu", "24:00:00")


def test_unfinished_tasks_raise_instead_of_waiting_forever(tmp_path):
    class Broken:  # an executor whose tasks died without their completion marker
        def run(self):
            (tmp_path / "logs" / "completions").mkdir(parents=True)
            (tmp_path / "logs" / "completions" / "00000").write_text("")

    with pytest.raises(FournilError, match=r"^corpus pass1: 1 of 2 tasks did not finish: task 1 did not run \(log: .*datatrove.log\); "
                                           r"the 1 finished tasks are kept"):
        run_executor(Broken(), tmp_path / "logs", 2, "test", "corpus pass1")


def test_the_corpus_stage_runs_on_slurm_and_gives_the_local_corpus(local, tmp_path, monkeypatch):
    import slurm_fake

    root, local = local
    state = slurm_fake.install(tmp_path, monkeypatch)
    remote = run_stage(_recipe(root, "slurm", {"poll_seconds": 0.2}), tmp_path / "slurm", "corpus", log=lambda m: None)
    assert [s["array"] for s in slurm_fake.submitted(state)] == [[0, 1], [0, 1]]  # pass 1, then pass 2 (two languages)
    assert remote["figures"]["per_language"] == local["figures"]["per_language"]
    assert remote["figures"]["steps"] == local["figures"]["steps"]
    for path in sorted((root / "local" / "corpus" / "train").rglob("*.zst")):
        assert (tmp_path / "slurm" / "corpus" / path.relative_to(root / "local" / "corpus")).read_bytes() == path.read_bytes()
    assert (tmp_path / "slurm" / "corpus" / "logs" / "pass1" / "slurm_logs" / "100_0.out").is_file()
