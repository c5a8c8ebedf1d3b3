"""The model: shapes, losses, masks, cache, presets, recipe validation, and the safetensors folder."""

from __future__ import annotations

import dataclasses
import json
import os
import stat

import pytest
import torch
import torch.nn.functional as F

from fournil.atomic import write_text
from fournil.errors import FournilError
from fournil.model.config import LlamaConfig, ModelSection
from fournil.model.io import load_model, save_model
from fournil.model.llama import KVCache, Llama
from fournil.model.presets import PRESETS, count_params, model_config

TINY = PRESETS["tiny"]
VARIANTS = {
    "gqa": {},
    "tied-qknorm": {"tie_embeddings": True, "qk_norm": True, "n_kv_heads": 4},
    "bloom": {"alibi": True, "embedding_norm": True, "n_heads": 8, "n_kv_heads": 8},  # 8 heads: power-of-2 slopes
    "alibi-6-heads": {"alibi": True, "dim": 48, "n_heads": 6, "n_kv_heads": 3},  # BLOOM's rule for other head counts
}


def build(**overrides) -> Llama:
    torch.manual_seed(0)
    return Llama(dataclasses.replace(TINY, **overrides))


@pytest.mark.parametrize("variant", VARIANTS)
def test_loss_equals_cross_entropy_of_logits_with_gradients(variant):
    model = build(**VARIANTS[variant])
    x = torch.randint(0, TINY.vocab_size, (2, 24))
    targets = torch.randint(0, TINY.vocab_size, (2, 24))
    targets[0, :5] = -100
    losses = model(x, targets)
    assert losses.shape == (2, 24) and losses.dtype == torch.float32
    assert torch.all(losses[0, :5] == 0) and torch.all(losses[:, 5:] > 0)
    (losses.sum() / 43).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    logits = model(x)
    assert logits.shape == (2, 24, TINY.vocab_size)
    reference = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view(2, 24)
    torch.testing.assert_close(losses, reference, rtol=1e-5, atol=1e-6)
    (reference.sum() / 43).backward()
    for g, p in zip(grads, model.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("z_loss", [0.0, 1e-2])
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("rows", [False, True])  # only the positions with a target through the head (SFT)
def test_fused_summed_loss_equals_cross_entropy_of_logits_in_many_chunks(monkeypatch, z_loss, tied, rows):
    model = build(tie_embeddings=tied)
    x, targets = torch.randint(0, 512, (3, 40)), torch.randint(0, 512, (3, 40))
    targets[1, 10:30] = -100
    logits = model(x).float()
    lse = torch.logsumexp(logits, dim=-1)
    ce = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view(3, 40)
    valid = targets != -100
    reference = ce.sum() + z_loss * lse[valid].square().sum()
    (reference * 0.37).backward()  # any scale, as the trainer's 1 / tokens
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    monkeypatch.setattr("fournil.model.llama.CE_CHUNK_LOGITS", 512 * 7)  # 7 tokens a chunk, a ragged last one
    target_rows = valid.flatten().nonzero()[:, 0] if rows else None
    total, per_token = model(x, targets, reduction="sum", z_loss=z_loss, target_rows=target_rows)
    assert total.shape == () and per_token.shape == (3, 40) and not per_token.requires_grad
    torch.testing.assert_close(per_token, ce.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(total, reference.detach(), rtol=1e-5, atol=1e-5)
    (total * 0.37).backward()
    for e, p in zip(expected, model.parameters(), strict=True):
        torch.testing.assert_close(p.grad, e, rtol=1e-4, atol=1e-6)


def test_causal_and_document_masking():
    model = build().eval()
    x = torch.randint(0, 512, (1, 20))
    full = model(x)
    changed = x.clone()
    changed[0, 12:] = (changed[0, 12:] + 1) % 512
    torch.testing.assert_close(model(changed)[:, :12], full[:, :12])  # no peeking at the future
    # two documents in one row: the second reads nothing of the first, so it equals running it alone
    docs = torch.tensor([[0] * 8 + [1] * 12])
    packed = model(x, document_ids=docs)
    torch.testing.assert_close(packed[:, :8], full[:, :8], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(packed[:, 8:], model(x[:, 8:]), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(packed[:, 8:], full[:, 8:], atol=1e-3)


@pytest.mark.parametrize("variant", ["gqa", "bloom"])
def test_kv_cache_gives_the_logits_of_a_full_pass(variant):
    model = build(**VARIANTS[variant]).eval()
    x = torch.randint(0, 512, (2, 15))
    full = model(x)
    cache = KVCache(model.config, 2, 32, "cpu", torch.float32)
    steps = [model(x[:, :9], cache=cache)] + [model(x[:, i:i + 1], cache=cache) for i in range(9, 13)] + [model(x[:, 13:], cache=cache)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-5)
    assert cache.length == 15


def test_init_is_deterministic_and_scaled():
    a, b = build(), build()
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q), name
    std = a.layers[0].attn.wq.weight.std().item()
    scaled = a.layers[0].ffn.w2.weight.std().item()
    assert abs(std - 0.02) < 0.002
    assert abs(scaled - 0.02 / 2) < 0.0015  # 1/sqrt(2 · 2 layers)


def test_zero_init_out_zeroes_only_the_residual_projections_and_exports_as_plain_llama():
    from fournil.model.hf import hf_config

    model = build(zero_init_out=True)
    for layer in model.layers:
        assert not layer.attn.wo.weight.any() and not layer.ffn.w2.weight.any()
        assert abs(layer.attn.wq.weight.std().item() - 0.02) < 0.002 and abs(layer.ffn.w1.weight.std().item() - 0.02) < 0.002
    ids = torch.randint(0, TINY.vocab_size, (1, 8))
    embedded = model.norm(model.embed(ids))  # every block starts as the identity
    assert torch.allclose(model(ids), F.linear(embedded, model.lm_head.weight))
    exported = hf_config(model.config, {"bos": None, "eos": None, "pad": None}, torch.float32)
    assert exported == hf_config(build().config, {"bos": None, "eos": None, "pad": None}, torch.float32)


def test_param_counts_and_flops():
    for name, config in PRESETS.items():
        if name == "tiny":
            continue
        assert count_params(config) > count_params(config, non_embedding=True)
    assert round(count_params(PRESETS["croissant-1.3b"]) / 1e9, 2) == 1.35
    assert round(count_params(PRESETS["ttl-160m"]) / 1e6) == 162
    assert round(count_params(PRESETS["lucie-7b"]) / 1e9, 2) == 6.71
    for overrides in VARIANTS.values():
        model = build(**overrides)
        assert model.num_params() == count_params(model.config)
        assert model.num_params(non_embedding=True) == count_params(model.config, non_embedding=True)
    model = build()
    c = model.config
    n = model.num_params(True) + c.vocab_size * c.dim
    assert model.flops_per_token(128) == 6 * n + 12 * c.n_layers * c.n_heads * c.head_dim * 128


def test_config_round_trip_and_errors():
    assert LlamaConfig.from_dict(TINY.to_dict()) == TINY
    with pytest.raises(FournilError, match="unknown field.*n_experts"):
        LlamaConfig.from_dict({**TINY.to_dict(), "n_experts": 8})
    with pytest.raises(FournilError, match="not a multiple of n_heads"):
        dataclasses.replace(TINY, dim=65)
    with pytest.raises(FournilError, match="expected int"):
        dataclasses.replace(TINY, n_layers=2.5)


def test_model_section_validates_presets_and_overrides():
    config = model_config(ModelSection(preset="croissant-1.3b", overrides={"n_layers": 2}), vocab_size=1000)
    assert (config.n_layers, config.dim, config.vocab_size) == (2, 2048, 1000)
    with pytest.raises(ValueError, match="unknown preset; choose one of tiny, ttl-160m"):
        ModelSection(preset="gpt5")
    with pytest.raises(ValueError, match="unknown field.*n_layer; allowed: dim, n_layers"):
        ModelSection(overrides={"n_layer": 4})
    with pytest.raises(ValueError, match="not a multiple of n_heads"):
        ModelSection(overrides={"n_heads": 5})
    with pytest.raises(ValueError, match="comes from the tokenizer"):
        ModelSection(overrides={"vocab_size": 4})


def test_recipe_with_bad_model_fails_at_validation(tmp_path):
    from fournil.recipe import parse_recipe

    (tmp_path / "a.txt").write_text("bonjour\n")
    data = {"name": "x", "languages": {"fr": 1.0}, "sources": [{"name": "a", "path": "a.txt", "lang": "fr", "license": "cc0"}],
            "model": {"preset": "tiny", "overrides": {"heads": 3}}}
    with pytest.raises(FournilError, match=r"model.overrides = \{'heads': 3\}: unknown field\(s\) heads; allowed: dim"):
        parse_recipe(data, tmp_path)


@pytest.mark.parametrize("variant", ["gqa", "tied-qknorm"])
def test_save_load_round_trip(tmp_path, variant):
    model = build(**VARIANTS[variant])
    save_model(model, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    loaded = load_model(tmp_path / "m")
    assert loaded.config == model.config
    x = torch.randint(0, 512, (1, 10))
    torch.testing.assert_close(loaded(x), model.eval()(x), rtol=0, atol=0)
    if model.config.tie_embeddings:
        assert loaded.lm_head.weight is loaded.embed.weight


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_written_files_take_the_umask_mode(tmp_path, mask):
    old = os.umask(mask)
    try:
        save_model(build(), tmp_path / "m")
        write_text(tmp_path / "m" / "notes.txt", "x")
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "m").iterdir()}
    assert modes == dict.fromkeys(["config.json", "model.safetensors", "notes.txt"], 0o666 & ~mask)


def test_corrupt_or_mismatched_files_name_the_tensor(tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "m"
    save_model(build(), folder)
    weights = folder / "model.safetensors"
    tensors = load_file(weights)
    tensors["layers.1.ffn.w2.weight"] = tensors["layers.1.ffn.w2.weight"][:, :10].contiguous()
    save_file(tensors, weights)
    with pytest.raises(FournilError, match=r"tensor layers\.1\.ffn\.w2\.weight has shape \[64, 10\]"):
        load_model(folder)
    del tensors["layers.1.ffn.w2.weight"]
    save_file(tensors, weights)
    with pytest.raises(FournilError, match=r"tensor layers\.1\.ffn\.w2\.weight is missing"):
        load_model(folder)
    tensors["layers.1.ffn.w2.weight"] = torch.full((64, 176), float("nan"))
    save_file(tensors, weights)
    with pytest.raises(FournilError, match=r"tensor layers\.1\.ffn\.w2\.weight holds non-finite"):
        load_model(folder)
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(FournilError, match="corrupt"):
        load_model(folder)
    (folder / "config.json").write_text(json.dumps({"format": "fournil-llama", "config": {**TINY.to_dict(), "dims": 3}}))
    with pytest.raises(FournilError, match="unknown field"):
        load_model(folder)
