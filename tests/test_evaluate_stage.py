"""The evaluate stage on a fake run, the transformers parity of bits per byte, and both forms of the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from evaluate_helpers import fake_run
from typer.testing import CliRunner

from fournil.cli import app
from fournil.runs import run_stage


EVALUATE = {"checkpoints": "all", "tasks": ["continuation_en", "translation_en_fr", "minimal_pairs_fr"],
            "reference": {"name": "CroissantLLM", "scores": {"minimal_pairs_fr": 0.8}}}
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    recipe, run_dir = fake_run(root, EVALUATE)
    manifest = run_stage(recipe, run_dir, "evaluate", log=lambda m: None)
    return root, recipe, run_dir, manifest


def test_stage_writes_results_per_checkpoint_language_and_task(evaluated):
    _, _, run_dir, manifest = evaluated
    results = json.loads((run_dir / "evaluate" / "results.json").read_text())
    assert [(c["name"], c["step"], c["tokens_seen"]) for c in results["checkpoints"]] == [("step_5", 5, 1000), ("final", 10, 2000)]
    final = results["checkpoints"][-1]
    for lang in ("en", "fr"):
        row = final["per_language"][lang]
        assert row["documents"] == 4 and row["bytes"] > 0 and row["tokens"] > 0
        assert row["beats_unigram"] == (row["bits_per_byte"] < row["unigram_bits_per_byte"])
        assert row["byte_perplexity"] == pytest.approx(2 ** row["bits_per_byte"])
    assert final["tasks"]["continuation_en"]["examples"] == 3 and "acc" in final["tasks"]["continuation_en"]["metrics"]
    assert final["tasks"]["translation_en_fr"]["num_fewshot"] == 3 and "chrf" in final["tasks"]["translation_en_fr"]["metrics"]
    memo = results["memorisation"]["by_repeats"]
    assert sorted(memo) == ["0", "1", "4"] and memo["1"]["canaries"] == 1 and memo["0"]["canaries"] == 4
    assert all(c["seen"] == c["repeats"] for c in results["memorisation"]["canaries"])  # all planted before 2000 tokens
    figures = manifest["figures"]
    assert figures["per_language"] == final["per_language"]
    assert figures["beats_unigram"] == all(r["beats_unigram"] for r in final["per_language"].values())
    assert [c["tokens_seen"] for c in figures["checkpoints"]] == [1000, 2000]
    assert all(set(c["tasks"]) == {"continuation_en", "translation_en_fr", "minimal_pairs_fr"} for c in figures["checkpoints"])
    assert figures["task_details"]["minimal_pairs_fr"]["metrics"]["chance"] == 0.5
    assert figures["reference"] == {"name": "CroissantLLM", "source": None, "scores": {"minimal_pairs_fr": 0.8}, "percent": False}
    assert "| en |" in (run_dir / "evaluate" / "results.md").read_text()


def test_unigram_baseline_is_add_one_smoothed_frequencies_in_bits_per_byte(evaluated):
    _, _, run_dir, _ = evaluated
    from fournil.corpus.documents import iter_documents
    from fournil.tokenizer import load

    tokenizer = load(run_dir / "tokenizer")
    counts = np.bincount(np.fromfile(run_dir / "mixture" / "shards" / "fr" / "maint.bin", dtype=np.uint16),
                         minlength=tokenizer.get_vocab_size())
    total, vocab = counts.sum(), tokenizer.get_vocab_size()
    nll = n_bytes = 0
    for doc in iter_documents(run_dir / "corpus", "heldout", "fr"):
        nll -= sum(math.log((counts[i] + 1) / (total + vocab)) for i in tokenizer.encode(doc["text"]).ids)
        n_bytes += len(doc["text"].encode())
    results = json.loads((run_dir / "evaluate" / "results.json").read_text())
    assert results["checkpoints"][-1]["per_language"]["fr"]["unigram_bits_per_byte"] == pytest.approx(nll / math.log(2) / n_bytes)


def test_bits_per_byte_equal_on_a_checkpoint_and_its_transformers_export(evaluated, tmp_path):
    pytest.importorskip("transformers")
    from fournil.corpus.documents import iter_documents
    from fournil.evaluate.models import open_model
    from fournil.model.hf import export_hf
    from fournil.model.scoring import bits_per_byte

    _, _, run_dir, _ = evaluated
    texts = [d["text"] for d in iter_documents(run_dir / "corpus", "heldout", "en")]
    export_hf(run_dir / "train" / "final", run_dir / "tokenizer", tmp_path / "hf")
    scores = []
    for folder in (run_dir / "train" / "final", tmp_path / "hf"):
        s = open_model(folder)
        scores.append((s.kind, bits_per_byte(s.model, s.tokenizer, texts, s.context_length, 4, s.bos_id, stride=16)))
    assert [kind for kind, _ in scores] == ["fournil", "transformers"]
    assert scores[0][1]["tokens"] == scores[1][1]["tokens"]
    assert scores[1][1]["bits_per_byte"] == pytest.approx(scores[0][1]["bits_per_byte"], rel=1e-4)


def test_cli_evaluates_a_recipe_or_a_model_folder(evaluated, tmp_path):
    root, _, run_dir, _ = evaluated
    recipe_file = tmp_path / "mini.yaml"  # the fixture's recipe, as a file
    recipe_file.write_text(json.dumps({
        "name": "mini", "languages": {"en": 0.5, "fr": 0.5},
        "sources": [{"name": "en", "path": str(SAMPLE / "en" / "maint-guide.jsonl.zst"), "lang": "en", "license": "GPL"}],
        "evaluate": {"max_examples": 3, "max_new_tokens": 8, **EVALUATE}}))
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", str(recipe_file), "--runs-dir", str(root / "runs")])
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output  # the stage the fixture ran, same fingerprint
    text = tmp_path / "fr.txt"
    text.write_text("Première phrase d'un document.\n\nUn autre document, plus court.\n")
    out = tmp_path / "out"
    result = runner.invoke(app, ["evaluate", str(run_dir / "train" / "final"), "--text", f"fr={text}", "--tasks", "continuation_fr",
                                 "--set", "evaluate.max_examples=2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["checkpoints"][0]["per_language"]["fr"]["documents"] == 2
    assert results["checkpoints"][0]["tasks"]["continuation_fr"]["examples"] == 2
    result = runner.invoke(app, ["evaluate", str(run_dir / "train" / "final"), "--set", "train.max_steps=3"])
    assert result.exit_code != 0 and "evaluate.*" in str(result.exception)


def test_training_checkpoints_of_a_real_bake_open_for_curves(baked):
    """train/checkpoints/step_N holds the bare model config (fournil.train.checkpoint), not the model format of train/final."""
    from fournil.evaluate.stage import checkpoints, open_checkpoint
    from fournil.model.scoring import bits_per_byte
    from fournil.tokenizer import load, special_ids

    manifest = json.loads((baked / "train" / "manifest.json").read_text())
    found = checkpoints(baked / "train", manifest, "all")
    assert [name for name, *_ in found] == ["step_20", "final"]
    tokenizer, ids = load(baked / "tokenizer"), special_ids(baked / "tokenizer")
    text = ["Le boulanger prépare le pain chaque matin avant l'aube."]
    scores = [bits_per_byte(s.model, tokenizer, text, s.context_length, 1, s.bos_id)["bits_per_byte"]
              for s in (open_checkpoint(folder, tokenizer, ids, "cpu") for _, folder, *_ in found)]
    assert all(math.isfinite(v) for v in scores) and scores[0] != scores[1]
