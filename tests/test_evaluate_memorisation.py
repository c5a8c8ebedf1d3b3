"""Memorisation of canaries (known answers on a bigram model) and the lm-eval bridge (a stand-in lm_eval module)."""

from __future__ import annotations

import dataclasses
import json
import sys
import types
from pathlib import Path

import pytest
import torch
from evaluate_helpers import Bigram, CharTokenizer, hand_nll, make_tokenizer

from fournil.errors import FournilError
from fournil.evaluate.memorisation import measure
from fournil.evaluate.models import Scorable

EOS = 1


def canary(ident: str, ids: list[int], repeats: int) -> dict:
    return {"id": ident, "text": "", "token_ids": ids, "repeats": repeats, "length": len(ids), "positions": list(range(0, 100 * repeats, 100))}


def test_extraction_and_loss_ratio_by_repeat_count():
    table = torch.zeros(128, 128)
    remembered = [10, 11, 12, 13, 14, 15]
    for a, b in zip([EOS, *remembered], remembered):
        table[a, b] = 12.0  # the model has learnt this canary by heart
    s = Scorable(Bigram(table, context_length=32), CharTokenizer(128), 32, 0, EOS, "test")
    canaries = [canary("a", remembered, 10), canary("b", [20, 30, 40, 50, 60, 70], 1)]
    controls = [canary("c", [40, 60, 80, 90, 100, 110], 0)]
    result = measure(s, canaries, controls, tokens_seen=150)
    rows = {r["id"]: r for r in result["canaries"]}
    assert rows["a"]["extracted"] and rows["a"]["suffix_token_accuracy"] == 1.0
    assert not rows["b"]["extracted"] and rows["b"]["suffix_token_accuracy"] == 0.0
    assert [rows[k]["seen"] for k in "abc"] == [2, 1, 0]  # positions 0..900 and 0: those below 150 tokens
    control_loss = hand_nll(table, [EOS, 40, 60, 80, 90, 100, 110]) / 6
    assert rows["a"]["loss_ratio"] == pytest.approx(hand_nll(table, [EOS, *remembered]) / 6 / control_loss, rel=1e-2)  # float32 on losses ~1e-4
    assert rows["a"]["loss_ratio"] < 0.01 and rows["c"]["loss_ratio"] == pytest.approx(1.0)
    by = result["by_repeats"]
    assert list(by) == ["0", "1", "10"] and by["10"]["extraction_rate"] == 1.0 and by["1"]["extracted"] == 0


def test_harness_without_lm_eval_says_how_to_install(tmp_path, monkeypatch):
    from fournil.evaluate.harness import run_harness

    monkeypatch.setitem(sys.modules, "lm_eval", None)  # import fails as when it is not installed
    with pytest.raises(FournilError, match=r"pip install 'fournil\[eval\]'"):
        run_harness(tmp_path, ["french_bench"], tmp_path / "out")


def test_harness_runs_lm_eval_on_the_transformers_export(tmp_path, monkeypatch):
    from fournil.evaluate.harness import run_harness
    from fournil.model.io import save_model
    from fournil.model.llama import Llama
    from fournil.model.presets import PRESETS

    calls = []

    def simple_evaluate(**kwargs):
        folder = Path(kwargs["model_args"].split(",")[0].removeprefix("pretrained="))
        calls.append((kwargs, sorted(p.name for p in folder.iterdir())))
        return {"results": {"french_bench_vocab": {"acc,none": 0.5}}, "n-samples": {"french_bench_vocab": {"effective": 4}}}

    monkeypatch.setitem(sys.modules, "lm_eval", types.SimpleNamespace(simple_evaluate=simple_evaluate, __version__="0.4.x"))
    registry = types.SimpleNamespace(get_model=lambda name: object)  # the hf backend is there
    monkeypatch.setitem(sys.modules, "lm_eval.api", types.SimpleNamespace(registry=registry))
    monkeypatch.setitem(sys.modules, "lm_eval.api.registry", registry)
    make_tokenizer(tmp_path / "tokenizer", ["le chat dort", "the cat sleeps"], vocab_size=300)
    save_model(Llama(dataclasses.replace(PRESETS["tiny"], vocab_size=300)), tmp_path / "train" / "final")
    summary = run_harness(tmp_path / "train" / "final", ["french_bench_vocab"], tmp_path / "out", tmp_path / "tokenizer", limit=4)
    kwargs, exported = calls[0]
    assert kwargs["model"] == "hf" and kwargs["tasks"] == ["french_bench_vocab"] and kwargs["limit"] == 4
    assert kwargs["apply_chat_template"] is False and "task_manager" not in kwargs  # lm-eval builds its own index
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(exported)
    assert summary["results"]["french_bench_vocab"]["acc,none"] == 0.5
    assert json.loads((tmp_path / "out" / "harness.json").read_text())["tasks"] == ["french_bench_vocab"]
