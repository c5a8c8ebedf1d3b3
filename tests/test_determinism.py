"""Same recipe, same seed, same bytes: under another Python hash seed, another number of corpus tasks
and workers, the corpus, tokenizer, token shards and (on CPU) the trained weights are identical."""

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
