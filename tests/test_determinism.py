"""Same recipe, same seed, same bytes: under another Python hash seed, another number of corpus tasks
and workers, the corpus, tokenizer, token shards and (on CPU) the trained weights are identical; and
the corpus stage's default split does not depend on the machine's cores."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

RECIPE = Path(__file__).parent / "recipes" / "mini.yaml"
VARYING = ("manifest.json", "logs", "log.jsonl", "state.json", "checksums.json")  # timings and wall clocks


def contents(stage_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(stage_dir)): p.read_bytes() for p in sorted(stage_dir.rglob("*"))
            if p.is_file() and not set(p.relative_to(stage_dir).parts) & set(VARYING) and not p.name.startswith("events.")}


@pytest.fixture(scope="module")
def other(baked, tmp_path_factory) -> Path:
    """The bake of `baked` up to train, under hash seed 3 with 1 worker and 5 corpus tasks, 1 mixture worker
    (`baked`: seed 1, a worker per core)."""
    runs_dir = tmp_path_factory.mktemp("other")
    result = subprocess.run([sys.executable, "-m", "fournil", "run", str(RECIPE), "--runs-dir", str(runs_dir), "--until", "train",
                             "--set", "corpus.workers=1", "--set", "corpus.tasks=5", "--set", "mixture.workers=1"],
                            capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "3"})
    assert result.returncode == 0, result.stderr[-3000:]
    return runs_dir / "mini"


@pytest.mark.parametrize("stage", ["corpus", "tokenizer", "mixture", "train"])
def test_the_same_bytes_under_another_hash_seed_and_worker_count(baked, other, stage):
    mine, theirs = contents(baked / stage), contents(other / stage)
    assert mine.keys() == theirs.keys()
    assert [name for name in mine if mine[name] != theirs[name]] == []
    if stage == "corpus":
        assert any(name.startswith("train/") for name in mine) and "stats.json" in mine
    if stage == "train":
        assert "final/model.safetensors" in mine


def test_a_corpus_stopped_on_one_machine_resumes_on_another_to_the_same_bytes(tmp_path, monkeypatch):
    """With corpus.workers and corpus.tasks left at 0, the pass-1 split comes from the input, not the
    cores: pass 2 stopped under 1 core resumes under 16 without redoing pass 1 (under the old
    '4 tasks per worker' default, 4 tasks' markers met a 6-task plan) and gives a 2-core run's bytes."""
    from fournil.corpus import pipeline
    from fournil.runs import run_stage
    from test_corpus_resume import _recipe

    recipe = _recipe(tmp_path, {"shard_documents": 7})  # six files, workers and tasks left at 0
    quiet = dict(log=lambda m: None)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    fresh = run_stage(recipe, tmp_path / "fresh", "corpus", **quiet)
    assert fresh["figures"]["tasks"] == 6 and fresh["figures"]["workers"] == 2

    ran = tmp_path / "ranks"  # the pass-1 ranks run, from any worker process
    real_curate, real_dedup = pipeline.CurateFiles.run, pipeline.DedupLanguage.run

    def curate(self, data=None, rank=0, world_size=1):
        with open(ran, "a") as f:
            f.write(f"{rank}\n")
        return real_curate(self, data, rank, world_size)

    def calls() -> list[int]:
        return sorted(map(int, ran.read_text().split())) if ran.exists() else []

    def stop(self, data=None, rank=0, world_size=1):
        raise KeyboardInterrupt
        yield

    monkeypatch.setattr(pipeline.CurateFiles, "run", curate)
    monkeypatch.setattr(pipeline.DedupLanguage, "run", stop)
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    with pytest.raises(KeyboardInterrupt):
        run_stage(recipe, tmp_path / "run", "corpus", **quiet)
    assert calls() == [0, 1, 2, 3, 4, 5]

    ran.unlink()
    monkeypatch.setattr(pipeline.DedupLanguage, "run", real_dedup)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    resumed = run_stage(recipe, tmp_path / "run", "corpus", **quiet)
    assert resumed["resumed"] is True and calls() == [] and resumed["figures"]["tasks"] == 6
    mine, theirs = contents(tmp_path / "run" / "corpus"), contents(tmp_path / "fresh" / "corpus")
    assert mine.keys() == theirs.keys() and "stats.json" in mine and any(name.startswith("train/") for name in mine)
    assert [name for name in mine if mine[name] != theirs[name]] == []


def test_corpus_workers_change_no_fingerprint_but_tasks_do(tmp_path):
    from fournil.recipe import parse_recipe
    from fournil.runs import get_stage, stage_inputs

    def inputs(**corpus):
        recipe = parse_recipe({"name": "r", "languages": {"fr": 1.0}, "corpus": corpus,
                               "sources": [{"name": "fr", "path": str(RECIPE.parents[2] / "data" / "sample" / "fr"), "lang": "fr", "license": "x"}]},
                              tmp_path)
        return stage_inputs(recipe, tmp_path, get_stage("corpus"), upstream={})

    assert inputs() == inputs(workers=3)
    assert inputs() != inputs(tasks=5)
