"""The tokenizer stage on a fake corpus folder: outputs, figures, report, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from fournil.corpus.documents import read_documents, write_documents
from fournil.errors import FournilError
from fournil.recipe import load_recipe
from fournil.runs import file_sha256, run_stage
from fournil.tokenizer import load, special_ids

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


def fake_corpus(run_dir: Path, langs: dict[str, int]) -> None:
    """A corpus stage folder: train and held-out documents from the sample, and a manifest."""
    for lang, limit in langs.items():
        docs = [d for path in sorted((SAMPLE / lang).glob("*.jsonl.zst")) for d, _ in zip(read_documents(path), range(limit))]
        write_documents(run_dir / "corpus" / "train" / lang / "sample" / "00000.jsonl.zst", docs[1::2])
        write_documents(run_dir / "corpus" / "heldout" / lang / "sample" / "00000.jsonl.zst", docs[::2][:20])
    (run_dir / "corpus" / "manifest.json").write_text(json.dumps({"stage": "corpus", "fingerprint": "fake", "figures": {}}))


def make_recipe(tmp_path: Path, tokenizer: dict, parallel: bool = True) -> Path:
    data = {
        "name": "tok",
        "languages": {"en": 0.5, "fr": 0.3, "de": 0.2},
        "sources": [{"name": lang, "path": str(SAMPLE / lang), "lang": lang, "license": "mixed"} for lang in ("en", "fr", "de")],
        "tokenizer": {"vocab_size": 1200, "sample_chars": 300_000, **tokenizer},
    }
    if parallel:
        data["parallel"] = [{"name": "enfr", "path": str(SAMPLE / "parallel" / "en-fr.test.tsv"), "langs": ["fr", "en"], "license": "mixed"}]
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def stage_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("stage")
    run_dir = tmp_path / "runs" / "tok"
    fake_corpus(run_dir, {"en": 60, "fr": 60, "de": 60})
    recipe = load_recipe(make_recipe(tmp_path, {"shares": {"en": 1, "fr": 1, "de": 2}}))
    manifest = run_stage(recipe, run_dir, "tokenizer")
    return run_dir / "tokenizer", manifest


def test_stage_writes_a_loadable_folder_and_its_figures(stage_run):
    out, manifest = stage_run
    figures = manifest["figures"]
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer_report.json", "tokenizer_report.md"):
        assert (out / name).is_file(), name
    assert figures["vocab_size"] == load(out).get_vocab_size() == 1200
    assert figures["sha256"] == file_sha256(out / "tokenizer.json")
    assert figures["special_tokens"]["bos"] == special_ids(out)["bos"] == 0
    assert set(figures["per_language"]) == {"en", "fr", "de"}
    for lang, f in figures["per_language"].items():
        assert 1.0 < f["fertility"] < 4.0, lang
        assert 0 < f["split_word_share"] < 1 and f["bytes_per_token"] >= f["chars_per_token"] > 1
    assert figures["per_language"]["en"]["parity_vs_en"] == 1.0
    assert 0.8 < figures["per_language"]["fr"]["parity_vs_en"] < 2.0  # langs given as [fr, en]: still en-fr
    assert "parity_vs_en" not in figures["per_language"]["de"]
    sample = figures["sample_chars_per_language"]  # shares 1:1:2 of 300,000 characters
    assert abs(sample["de"] - 150_000) < 5000 and abs(sample["en"] - 75_000) < 5000


def test_report_json_matches_figures_and_markdown_has_a_table(stage_run):
    out, manifest = stage_run
    report = json.loads((out / "tokenizer_report.json").read_text())
    assert report["results"][0]["per_language"]["fr"]["fertility"] == manifest["figures"]["per_language"]["fr"]["fertility"]
    assert report["parallel_pairs"] == {"fr": 400}
    md = (out / "tokenizer_report.md").read_text()
    assert "| fr | " + f"{manifest['figures']['per_language']['fr']['fertility']:.3f}" in md


def test_unknown_share_language_is_a_user_error(tmp_path):
    run_dir = tmp_path / "runs" / "tok"
    fake_corpus(run_dir, {"en": 2})
    recipe = load_recipe(make_recipe(tmp_path, {"shares": {"en": 1, "xx": 1}}))
    with pytest.raises(FournilError, match="xx"):
        run_stage(recipe, run_dir, "tokenizer")


def test_language_without_training_text_is_a_user_error(tmp_path):
    run_dir = tmp_path / "runs" / "tok"
    fake_corpus(run_dir, {"en": 2, "fr": 2})  # no German
    recipe = load_recipe(make_recipe(tmp_path, {}, parallel=False))
    with pytest.raises(FournilError, match="de"):
        run_stage(recipe, run_dir, "tokenizer")


def test_cli_runs_the_stage_with_overrides_and_keeps_report_next_to_it(tmp_path):
    from typer.testing import CliRunner

    from fournil.cli import app

    run_dir = tmp_path / "runs" / "tok"
    fake_corpus(run_dir, {"en": 20, "fr": 20, "de": 20})
    recipe = make_recipe(tmp_path, {})
    args = ["tokenizer", str(recipe), "--runs-dir", str(tmp_path / "runs"), "--set", "tokenizer.vocab_size=1000"]
    assert CliRunner().invoke(app, args).exit_code == 0
    assert load(run_dir / "tokenizer").get_vocab_size() == 1000
    assert "up to date" in CliRunner().invoke(app, args).output  # second time: skipped
    result = CliRunner().invoke(app, [*args, "--force", "--set", "tokenizer.vocab_size=1100"])
    assert result.exit_code == 0 and load(run_dir / "tokenizer").get_vocab_size() == 1100
    help_text = CliRunner().invoke(app, ["tokenizer", "--help"], env={"COLUMNS": "200"}).output
    assert "RECIPE" in help_text.upper() and "--set" in help_text and "--runs-dir" in help_text and "tokenizer report" in help_text


def test_code_share_draws_code_documents_from_every_language(tmp_path):
    from fournil.tokenizer.stage import pools

    docs = [{"id": "a", "text": "prose", "category": "fiction"}, {"id": "b", "text": "x = 1", "category": "code"}]
    write_documents(tmp_path / "train" / "en" / "s" / "0.jsonl.zst", docs)
    write_documents(tmp_path / "train" / "fr" / "s" / "0.jsonl.zst", [{**d, "text": d["text"] + " fr"} for d in docs])
    with_code = pools(tmp_path, {"en": 1, "fr": 1, "code": 1}, ["en", "fr"], "train")
    assert list(with_code["en"]) == ["prose"] and list(with_code["code"]) == ["x = 1", "x = 1 fr"]
    assert list(pools(tmp_path, {"en": 1}, ["en"], "train")["en"]) == ["prose", "x = 1"]


def test_interrupted_stage_reuses_the_trained_tokenizer(stage_run, tmp_path):
    import shutil

    from fournil.runs import MANIFEST, STARTED

    out, manifest = stage_run
    run_dir = tmp_path / "runs" / "tok"
    shutil.copytree(out.parent / "corpus", run_dir / "corpus")
    shutil.copytree(out, run_dir / "tokenizer")
    (run_dir / "tokenizer" / MANIFEST).unlink()  # as if killed while measuring
    (run_dir / "tokenizer" / STARTED).write_text(json.dumps({"inputs": manifest["inputs"]}))
    recipe = load_recipe(make_recipe(tmp_path, {"shares": {"en": 1, "fr": 1, "de": 2}}))
    again = run_stage(recipe, run_dir, "tokenizer")
    assert again["resumed"] and again["figures"]["sha256"] == manifest["figures"]["sha256"]
    assert again["figures"]["per_language"] == manifest["figures"]["per_language"]
