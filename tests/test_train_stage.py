"""The train stage on a real mixture folder: the model, the log, final/ and the figures."""

from __future__ import annotations

import json

import pytest

from fournil.errors import FournilError
from fournil.model.io import load_model
from fournil.runs import run_stage
from fournil.tokenizer import load as load_tokenizer
from mixture_helpers import build_run, recipe, run_mixture

GROUPS = {("fr", "fr-wiki"): (40, 40), ("en", "en-wiki"): (40, 40)}


def test_train_stage_writes_final_model_log_and_figures(tmp_path):
    run_dir = build_run(tmp_path, GROUPS)
    r = recipe(tmp_path, mixture={"canaries": {"count": 0}}, model={"preset": "tiny", "overrides": {"context_length": 64, "n_layers": 1}},
               train={"max_steps": 6, "global_batch_tokens": 512, "micro_batch_size": 4, "warmup_steps": 2,
                      "checkpoint_every": 3, "log_every": 2, "tensorboard": False})
    run_mixture(tmp_path, r, run_dir)
    manifest = run_stage(r, run_dir, "train", log=lambda message: None)
    figures = manifest["figures"]
    assert figures["steps"] == 6 and figures["tokens"] == 6 * 512 and figures["gradient_accumulation"] == 2
    assert set(figures["per_language"]) == {"fr", "en"}
    assert all(v["final_loss"] > 0 for v in figures["per_language"].values())
    assert figures["energy"]["kwh"] > 0 and figures["energy"]["method"]
    assert figures["model"]["vocab_size"] == load_tokenizer(run_dir / "tokenizer").get_vocab_size()
    train = run_dir / "train"
    lines = [json.loads(line) for line in (train / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(1, 7))
    assert sum(lines[0]["tokens_per_language"].values()) == 512
    model = load_model(train / "final")
    assert model.config.context_length == 64 and model.num_params() == figures["params"]
    assert (train / "checkpoints" / "step_6" / "model.safetensors").is_file()
    assert "checkpoints/step_6/checksums.json" in manifest["outputs"]


def test_a_finished_run_extends_when_only_how_it_trains_changes_and_restarts_when_what_changes(tmp_path):
    run_dir = build_run(tmp_path, GROUPS)
    train = {"max_steps": 6, "global_batch_tokens": 512, "micro_batch_size": 4, "warmup_steps": 2, "schedule": "wsd",
             "checkpoint_every": 3, "log_every": 2, "tensorboard": False}
    model = {"preset": "tiny", "overrides": {"context_length": 64, "n_layers": 1}}
    first = recipe(tmp_path, mixture={"canaries": {"count": 0}}, model=model, train=train)
    run_mixture(tmp_path, first, run_dir)
    before = run_stage(first, run_dir, "train", log=lambda message: None)["figures"]
    said = []
    # longer, another micro-batch and log interval: the same lineage, so the run goes on from step 6
    longer = recipe(tmp_path, mixture={"canaries": {"count": 0}}, model=model,
                    train={**train, "max_steps": 9, "micro_batch_size": 2, "log_every": 3})
    figures = run_stage(longer, run_dir, "train", log=said.append)["figures"]
    assert "[train] resuming: train the model, checkpointing as it goes" in said
    assert figures["steps"] == 9 and figures["resumed_from_step"] == 6 and figures["gradient_accumulation"] == 4
    assert figures["wall_seconds"] > figures["wall_seconds_this_run"] and figures["wall_seconds"] >= before["wall_seconds"]
    assert figures["energy"]["kwh"] > before["energy"]["kwh"]
    lines = [json.loads(line) for line in (run_dir / "train" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(1, 10))
    with pytest.raises(FournilError, match=r"step_9 is at step 9, past train.max_steps = 5; raise train.max_steps"):
        run_stage(recipe(tmp_path, mixture={"canaries": {"count": 0}}, model=model, train={**train, "max_steps": 5}),
                  run_dir, "train", log=lambda message: None)
    # another learning rate is another run: its checkpoints are discarded only when asked to
    other = recipe(tmp_path, mixture={"canaries": {"count": 0}}, model=model, train={**train, "lr": 1e-3})
    with pytest.raises(FournilError, match=r"holds checkpoints/step_\* made with other settings or inputs \(train.lr: 0.003 → 0.001\); "
                                           r"to discard it and start afresh, run `fournil train RECIPE --force`"):
        run_stage(other, run_dir, "train", log=lambda message: None)
    assert (run_dir / "train" / "checkpoints" / "step_9").is_dir()
    said.clear()
    figures = run_stage(other, run_dir, "train", force=True, log=said.append)["figures"]
    assert figures["resumed_from_step"] is None and figures["steps"] == 6
    assert any("--force: the earlier work in" in m for m in said)
