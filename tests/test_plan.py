"""`fournil plan`: every recipe plans next to its reference system's published figures; a plan that
cannot fit in memory stops `fournil run` before any work, saying what to change."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from fournil import plan
from fournil.model.llama import Llama
from fournil.model.presets import PRESETS, model_config
from fournil.recipe import load_recipe
from fournil.train.memory import activation_bytes
from fournil.train.optim import hidden_matrices

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))


@pytest.fixture(scope="module")
def plans() -> dict[str, dict]:
    return {path.stem: plan.make(load_recipe(path)) for path in RECIPES}


def test_every_recipe_validates_and_plans(plans):
    assert len(plans) == len(RECIPES) >= 6
    for name, made in plans.items():
        assert made["tokens"] > 0 and made["model"]["parameters"] > made["model"]["non_embedding_parameters"] > 0, name
        assert plan.short(made).count("\n") == 3 and "# plan of" in plan.full(made)


@pytest.mark.parametrize("path", [p for p in RECIPES if not p.stem.startswith("demo")], ids=lambda p: p.stem)
def test_recipe_keeps_its_reference_figures(plans, path):
    made = plans[path.stem]
    ref = made["reference"]
    assert ref is not None, f"{path.name} names no plan.reference"
    assert made["model"]["parameters"] == pytest.approx(ref["parameters"], rel=0.03)
    assert made["tokens"] == pytest.approx(ref["tokens"], rel=0.02)
    assert made["model"]["vocab_size"] == ref["vocab_size"]
    recipe = load_recipe(path)
    common = [lang for lang in ref["shares"] if lang in recipe.languages]
    for lang in common:  # the recipe keeps the reference's ratios between the languages both have
        ours = recipe.languages[lang] / sum(recipe.languages[c] for c in common)
        theirs = ref["shares"][lang] / sum(ref["shares"][c] for c in common)
        assert ours == pytest.approx(theirs, abs=0.005), lang
    if ref["non_english_curriculum"]:
        assert [s["non_english"] for s in made["stages"]] == pytest.approx(ref["non_english_curriculum"])
    assert made["memory"]["fits"], plan.memory_line(made)


def test_lucie_changes_its_mixture_when_the_wsd_decay_starts(plans):
    lucie = plans["lucie"]
    assert lucie["wsd_decay_start_step"] == 600_000 and lucie["decay_stage"] == "annealing"
    assert lucie["memory"]["parallelism"] == "fsdp" and lucie["batch"] == {
        "global_batch_tokens": 4_194_304, "tokens_per_micro_step": 4_194_304, "accumulation": 1, "exact": True}


def test_memory_and_cost_figures(plans):
    lucie = load_recipe(RECIPES[[p.stem for p in RECIPES].index("lucie")], ["train.parallelism=ddp"])
    ddp = plan.memory_per_gpu(lucie, 512)
    assert ddp["states"] == 16 * plans["lucie"]["model"]["parameters"]  # fp32 weights, gradients, two moments
    assert round(ddp["states"] / 1e9) == 107 and not ddp["sharded"]
    fsdp = plans["lucie"]["memory"]
    assert fsdp["sharded"] and fsdp["states"] < ddp["states"] / 20 and fsdp["total"] < 80e9 < ddp["total"]
    muon = plan.memory_per_gpu(load_recipe(RECIPES[[p.stem for p in RECIPES].index("lucie")], ["train.parallelism=ddp", "train.optimizer=muon"]), 512)
    config = model_config(lucie.model, lucie.tokenizer.vocab_size)
    small = Llama(dataclasses.replace(config, dim=64, n_heads=4, n_kv_heads=2, ffn_dim=96, n_layers=3, vocab_size=256))
    assert plan.muon_matrices(small.config) == sum(p.numel() for p in hidden_matrices(small))  # what Muon holds
    assert ddp["states"] - muon["states"] == 4 * plan.muon_matrices(config) > 0.99 * 4 * plans["lucie"]["model"]["non_embedding_parameters"]
    c = plans["croissant"]["compute"]
    assert c["gpu_hours"] == pytest.approx(c["flops"] / (312e12 * 0.4) / 3600)
    assert c["kwh"] == pytest.approx(c["gpu_hours"] * 400 * 1.2 / 1000) and c["kg_co2eq"] == pytest.approx(c["kwh"] * 0.475)


def test_smaller_models_reach_the_same_fitted_loss(plans):
    made = plans["croissant"]
    n, d = made["model"]["parameters"], made["tokens"]
    rows = plan.smaller_models(n, d)
    for row in rows:
        if not math.isinf(row["tokens"]) and not row.get("compute_optimal"):
            assert plan.loss_fit(row["parameters"], row["tokens"]) == pytest.approx(plan.loss_fit(n, d))
            assert row["train_compute"] > 1 and row["inference_cost"] < 1
    optimal = rows[-1]
    assert optimal["compute_optimal"] and optimal["tokens"] == pytest.approx(20 * optimal["parameters"])


def test_run_refuses_a_plan_that_does_not_fit(tmp_path):
    lucie = next(p for p in RECIPES if p.stem == "lucie")
    result = subprocess.run([sys.executable, "-m", "fournil", "run", str(lucie), "--runs-dir", str(tmp_path),
                             "--set", "train.parallelism=ddp"], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: plan refused: memory: about ") and "under ddp on 512 × H100" in last
    assert "set train.parallelism: fsdp" in last
    assert not any(tmp_path.iterdir()), "refused before any stage ran"


def test_plan_command_writes_json(tmp_path):
    demo = next(p for p in RECIPES if p.stem == "demo")
    out = tmp_path / "plan.json"
    result = subprocess.run([sys.executable, "-m", "fournil", "plan", str(demo), "--runs-dir", str(tmp_path), "--json", str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["model"]["parameters"] == 5_261_568 and "smaller models trained longer" in result.stdout
    assert set(data["data"]["languages"]) == {"fr", "en"}


def test_the_activation_formula_matches_what_autograd_keeps():
    """plan's activation bytes per token against the tensors an eager bf16 forward saves for backward, counted
    (grouped-query attention included: k and v reach SDPA expanded, so they cost what q does). Compiled
    blocks take half a minute to compile here: benchmarks/memory.py checks those."""
    config = dataclasses.replace(PRESETS["lucie-7b"], dim=512, n_heads=8, n_kv_heads=2, ffn_dim=1792, n_layers=2,
                                 vocab_size=4096, context_length=64)
    counted, constant = activation_bytes(Llama(config), 64)
    assert plan.activations_per_token(config, compiled=False) == pytest.approx(counted, rel=0.01)
    full_heads, _ = activation_bytes(Llama(dataclasses.replace(config, n_kv_heads=8)), 64)
    assert full_heads == pytest.approx(counted, rel=0.01)
    assert constant >= 2 * config.vocab_size * config.dim  # at least autocast's bf16 copy of the head
