"""Muon for the blocks' matrices, AdamW for the rest: the split, exact resume, and refusing a
checkpoint of another optimiser (two processes: tests/test_train_distributed.py)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch

from fournil.errors import FournilError
from fournil.model.llama import Llama
from fournil.train.distributed import compile_model
from fournil.train.optim import Muon, build_optimizers, orthogonalize
from train_helpers import MODEL, config, make_trainer, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")  # bitwise comparisons want one thread


def test_every_parameter_is_in_exactly_one_group_and_muon_holds_the_blocks_matrices():
    model = tiny_model()
    muon, adamw = build_optimizers(model, config(optimizer="muon"))
    assert isinstance(muon, Muon) and isinstance(adamw, torch.optim.AdamW)
    grouped = [id(p) for o in (muon, adamw) for g in o.param_groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters()) and len(set(grouped)) == len(grouped)
    names = {id(p): n for n, p in model.named_parameters()}
    in_muon = {names[id(p)] for g in muon.param_groups for p in g["params"]}
    assert len(in_muon) == 7 * MODEL.n_layers and all(n.startswith("layers.") and n.endswith(".weight") for n in in_muon)
    assert not any("norm" in n for n in in_muon)
    decayed, plain = adamw.param_groups
    assert {names[id(p)] for p in decayed["params"]} == {"embed.weight", "lm_head.weight"} and decayed["weight_decay"] == 0.1
    assert all(p.dim() == 1 for p in plain["params"]) and plain["weight_decay"] == 0.0
    (alone,) = build_optimizers(model, config(optimizer="adamw"))  # one optimiser for everything
    assert sum(len(g["params"]) for g in alone.param_groups) == len(list(model.parameters()))


def test_newton_schulz_makes_the_singular_values_near_one():
    matrix = torch.randn(48, 80, generator=torch.Generator().manual_seed(0)) * torch.logspace(-2, 1, 80)
    singular = torch.linalg.svdvals(orthogonalize(matrix, 5, (3.4445, -4.7750, 2.0315), 1e-7))
    assert singular.min() > 0.6 and singular.max() < 1.25  # Jordan's quintic: S' in about (0.7, 1.2)
    assert orthogonalize(matrix.T, 5, (3.4445, -4.7750, 2.0315), 1e-7).shape == (80, 48)


def test_muon_resumes_bit_for_bit_and_learns(tmp_path):
    cfg = config(optimizer="muon", max_steps=20, log_every=1)
    straight = make_trainer(tmp_path / "straight", cfg).train()
    shutil.copytree(tmp_path / "straight", tmp_path / "stopped", ignore=shutil.ignore_patterns("step_20"))  # stopped at step 10
    resumed = make_trainer(tmp_path / "stopped", cfg)
    resumed.train()
    assert resumed.resumed_from == 10
    lines = [[json.loads(x) for x in (tmp_path / run / "log.jsonl").read_text().splitlines()] for run in ("straight", "stopped")]
    assert [(r["loss"], r["grad_norm"]) for r in lines[1]] == [(r["loss"], r["grad_norm"]) for r in lines[0]]
    assert lines[0][-1]["loss"] < 0.6 * lines[0][0]["loss"] and straight["skipped_steps"] == 0
    state = json.loads((tmp_path / "stopped" / "checkpoints" / "step_20" / "state.json").read_text())
    assert state["optimizer_name"] == "muon"


def test_a_model_with_zero_initialised_output_projections_learns_under_muon(tmp_path):
    torch.manual_seed(0)
    model = Llama(dataclasses.replace(MODEL, zero_init_out=True))
    make_trainer(tmp_path, config(optimizer="muon", max_steps=20, log_every=1), model=model).train()
    lines = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert lines[-1]["loss"] < 0.6 * lines[0]["loss"]
    assert all(layer.attn.wo.weight.any() and layer.ffn.w2.weight.any() for layer in model.layers)  # they left zero


def test_a_checkpoint_of_one_optimizer_is_refused_by_another(tmp_path):
    make_trainer(tmp_path, config(optimizer="adamw", max_steps=10)).train()
    with pytest.raises(FournilError, match=r"written with train.optimizer = adamw, whose state does not fit muon's; "
                                           r"resume with train.optimizer: adamw, or start afresh with --force"):
        make_trainer(tmp_path, config(optimizer="muon", max_steps=20)).train()


def test_muon_trains_a_compiled_model_as_an_eager_one(tmp_path):
    cfg = config(optimizer="muon", max_steps=6, log_every=1)
    make_trainer(tmp_path / "eager", cfg).train()
    model = tiny_model()
    compile_model(model)
    make_trainer(tmp_path / "compiled", cfg, model=model).train()
    eager, compiled = ([json.loads(x)["loss"] for x in (tmp_path / run / "log.jsonl").read_text().splitlines()] for run in ("eager", "compiled"))
    assert compiled == pytest.approx(eager, rel=1e-5)
