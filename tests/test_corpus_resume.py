"""An interrupted corpus run redoes only its unfinished tasks and ends with the same corpus."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import zstandard

from fournil.corpus import pipeline
from fournil.corpus.documents import iter_documents
from fournil.recipe import parse_recipe
from fournil.runs import run_stage

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


def _recipe(root: Path, corpus: dict | None = None):
    """Three files per language (fr, en) of the sample, so pass 1 has several tasks."""
    for lang in ("fr", "en"):
        with open(SAMPLE / lang / "gnome-user-docs.jsonl.zst", "rb") as f:
            lines = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f), encoding="utf-8").readlines()[:30]
        (root / lang).mkdir()
        for i in range(3):  # three files per language, so pass 1 has several tasks
            (root / lang / f"part{i}.jsonl").write_text("".join(lines[i::3]), encoding="utf-8")
    return parse_recipe({
        "name": "r", "languages": {"fr": 0.5, "en": 0.5},
        "sources": [{"name": lang, "path": lang, "lang": lang, "license": "CC-BY-SA-3.0"} for lang in ("fr", "en")],
        "corpus": {"workers": 1, "tasks": 3, "shard_documents": 7} if corpus is None else corpus,
    }, root)


def test_resume_redoes_only_unfinished_tasks(tmp_path, monkeypatch):
    recipe = _recipe(tmp_path)
    fresh = run_stage(recipe, tmp_path / "fresh", "corpus", log=lambda m: None)

    calls = []
    real_curate, real_dedup = pipeline.CurateFiles.run, pipeline.DedupLanguage.run

    def curate(self, data=None, rank=0, world_size=1):
        calls.append(rank)
        return real_curate(self, data, rank, world_size)

    def crash(self, data=None, rank=0, world_size=1):
        raise KeyboardInterrupt  # the run is stopped during pass 2
        yield

    monkeypatch.setattr(pipeline.CurateFiles, "run", curate)
    monkeypatch.setattr(pipeline.DedupLanguage, "run", crash)
    with pytest.raises(KeyboardInterrupt):
        run_stage(recipe, tmp_path / "run", "corpus", log=lambda m: None)
    assert sorted(calls) == [0, 1, 2]

    calls.clear()
    monkeypatch.setattr(pipeline.DedupLanguage, "run", real_dedup)
    resumed = run_stage(recipe, tmp_path / "run", "corpus", log=lambda m: None)
    assert resumed["resumed"] is True and calls == []  # pass 1 was complete: not redone
    assert resumed["figures"]["per_language"] == fresh["figures"]["per_language"]
    assert resumed["figures"]["steps"] == fresh["figures"]["steps"]
    out = tmp_path / "run" / "corpus"
    assert [d["id"] for d in iter_documents(out)] == [d["id"] for d in iter_documents(tmp_path / "fresh" / "corpus")]
    assert not (out / "work").exists() and resumed["figures"]["tasks"] == 3
    for split in ("train", "heldout"):  # and to the byte
        for path in sorted((tmp_path / "fresh" / "corpus" / split).rglob("*.zst")):
            assert (out / path.relative_to(tmp_path / "fresh" / "corpus")).read_bytes() == path.read_bytes()
    assert (out / "stats.json").read_bytes() == (tmp_path / "fresh" / "corpus" / "stats.json").read_bytes()


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads children from /proc (Linux)")
def test_no_worker_outlives_a_kill_9_of_its_parent(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    mini = Path(__file__).parent / "recipes" / "mini.yaml"
    parent = subprocess.Popen([sys.executable, "-m", "fournil", "corpus", str(mini), "--runs-dir", str(tmp_path),
                               "--set", "corpus.workers=2", "--set", "corpus.tasks=6"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def children(pid: int) -> set[int]:
        found = set()
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                found |= {int(c) for c in (task / "children").read_text().split()}
            except OSError:
                pass
        return found

    deadline, workers = time.time() + 120, set()
    while time.time() < deadline and len(workers) < 3 and parent.poll() is None:  # datatrove's Manager and two pool workers
        workers = children(parent.pid)
        time.sleep(0.05)
    assert len(workers) >= 3, "the corpus stage ended before its workers could be seen"
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(Path(f"/proc/{w}").exists() for w in workers):
        time.sleep(0.1)
    alive = [w for w in workers if Path(f"/proc/{w}").exists() and "Z" not in Path(f"/proc/{w}/stat").read_text().split()[2]]
    for w in alive:  # leave nothing behind, whatever the outcome
        os.kill(w, signal.SIGKILL)
    assert not alive, f"workers {alive} outlived their parent"
