"""Every recipe in recipes/ bakes end to end at proxy scale: its data logic kept, its model, vocabulary,
context and budget shrunk, its card saying so. CI bakes the `tiny` proxy on the first documents of each
shipped sample file (the recipes are copied next to that small sample, so their relative paths find it)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
import zstandard

from fournil.recipe import load_recipe
from fournil.runs import run_all, run_dir_for

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))
DOCS_PER_FILE, CHARS_PER_DOC, PAIRS, CONVERSATIONS = 10, 1500, 60, 40


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory) -> Path:
    """recipes/ and data/sample/ copied with the first documents of every sample file only."""
    root = tmp_path_factory.mktemp("proxy")
    shutil.copytree(ROOT / "recipes", root / "recipes")
    for path in sorted((ROOT / "data" / "sample").rglob("*")):
        target = root / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.name.endswith(".jsonl.zst"):
            with zstandard.ZstdDecompressor().stream_reader(path.open("rb")) as raw:
                lines = io.TextIOWrapper(raw, encoding="utf-8").readlines()[:DOCS_PER_FILE]
            records = [json.loads(line) for line in lines]
            text = "".join(json.dumps({**r, "text": r["text"][:CHARS_PER_DOC]}, ensure_ascii=False) + "\n" for r in records)
            target.write_bytes(zstandard.ZstdCompressor().compress(text.encode("utf-8")))
        elif path.suffix == ".tsv":
            target.write_text("".join(path.read_text(encoding="utf-8").splitlines(keepends=True)[:PAIRS]), encoding="utf-8")
        elif path.is_file():
            shutil.copyfile(path, target)
    for path in sorted((ROOT / "data" / "instructions").glob("*.jsonl")):  # demo-chat's conversations, the first few
        target = root / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("".join(path.read_text(encoding="utf-8").splitlines(keepends=True)[:CONVERSATIONS]), encoding="utf-8")
    return root


@pytest.mark.parametrize("name", [p.stem for p in RECIPES])
def test_every_recipe_bakes_at_proxy_scale(small_tree, tmp_path, name):
    path = small_tree / "recipes" / f"{name}.yaml"
    sets = ["release.gguf=true"] if name == "bloom" else []  # llama.cpp's bloom architecture, from the release stage
    full, proxy = load_recipe(path), load_recipe(path, sets, proxy="tiny")
    assert proxy.name == f"{name}-proxy-tiny" and proxy.proxy.of == name
    # the data logic is the recipe's own
    for field in ("languages", "sources", "parallel", "corpus"):
        assert getattr(proxy, field) == getattr(full, field), field
    mixture = proxy.mixture.model_dump()
    assert mixture.pop("canaries")["count"] == full.mixture.canaries.count
    assert mixture == {k: v for k, v in full.mixture.model_dump().items() if k != "canaries"}
    assert (proxy.tokenizer.shares, proxy.train.schedule, proxy.train.decay_fraction, proxy.train.parallelism) == \
           (full.tokenizer.shares, full.train.schedule, full.train.decay_fraction, full.train.parallelism)
    run_dir = run_dir_for(proxy, tmp_path)
    manifests = run_all(proxy, run_dir, log=lambda message: None)
    assert manifests["train"]["figures"]["steps"] == proxy.train.max_steps
    assert manifests["sft"]["figures"]["instruction_tuned"] is (full.sft is not None)
    card = (run_dir / "release" / "README.md").read_text()
    assert f"**This is a proxy bake** of the recipe `{name}`" in card and "model.overrides.dim: " in card
    config = json.loads((run_dir / "release" / "config.json").read_text())
    assert config["architectures"] == ["BloomForCausalLM" if name == "bloom" else "LlamaForCausalLM"]
    if name == "bloom":  # the release reads back into fournil, and its GGUF files are llama.cpp's bloom
        from gguf import GGUFReader

        from fournil.model.io import load_model

        assert load_model(run_dir / "release").config.alibi
        files = manifests["release"]["figures"]["gguf"]
        assert files == ["bloom-style-1b7-F16.gguf", "bloom-style-1b7-Q8_0.gguf", "bloom-style-1b7-Q4_0.gguf"]
        field = GGUFReader(run_dir / "release" / files[0]).fields["general.architecture"]
        assert bytes(field.parts[field.data[0]]).decode() == "bloom"


@pytest.mark.parametrize(("name", "every"), [("croissant", 15), ("teenytinyllama", 15), ("lucie", 0), ("demo", 30)])
def test_a_small_proxy_evaluates_at_most_ten_times_and_warms_up_at_the_same_fraction(name, every):
    full, proxy = load_recipe(ROOT / "recipes" / f"{name}.yaml"), load_recipe(ROOT / "recipes" / f"{name}.yaml", proxy="small")
    assert proxy.train.max_steps == 150 and proxy.train.eval_every == every  # croissant's full run: every 1000 of 190,000 steps
    assert proxy.train.warmup_steps == max(1, round(full.train.warmup_steps * 150 / full.train.max_steps))
    assert (f"train.eval_every: {full.train.eval_every:,} → {every}" in proxy.proxy.changes) is bool(full.train.eval_every)


def test_a_model_transformers_cannot_load_releases_in_fournils_format(small_tree, tmp_path):
    recipe = load_recipe(small_tree / "recipes" / "demo.yaml", ["model.overrides.qk_norm=true"], proxy="tiny")
    manifests = run_all(recipe, run_dir_for(recipe, tmp_path), log=lambda message: None)
    figures = manifests["release"]["figures"]
    assert figures["format"] == "fournil" and "qk_norm" in figures["not_exported"]
    release = run_dir_for(recipe, tmp_path) / "release"
    assert json.loads((release / "config.json").read_text())["config"]["qk_norm"] is True
    card = (release / "README.md").read_text()
    assert "**Not exported to transformers:**" in card and "fournil generate path/to/" in card
    from fournil.model.io import load_model

    assert load_model(release).config.qk_norm  # fournil reads its own release
