"""A bigram model with the Llama interface: log-likelihoods in tests can be computed by hand."""

from __future__ import annotations

import torch
from torch import nn


class Bigram(nn.Module):
    """logits[b, t] = table[input_ids[b, t]]: the next token depends on the current one only."""

    def __init__(self, table: torch.Tensor, context_length: int = 8) -> None:
        super().__init__()
        self.table = nn.Parameter(table.float())
        self.config = type("Config", (), {"context_length": context_length})()

    def forward(self, input_ids, targets=None, document_ids=None):
        logits = self.table[input_ids]
        if targets is None:
            return logits
        nll = nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100, reduction="none")
        return nll.view(targets.shape)


class CharTokenizer:
    """One token per character (ids = code point mod vocabulary), with the `tokenizers` encode API."""

    def __init__(self, vocab: int) -> None:
        self.vocab = vocab

    def encode(self, text: str, add_special_tokens: bool = False):
        return type("Encoding", (), {"ids": [ord(c) % self.vocab for c in text]})()

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return "".join(chr(i) for i in ids)

    def get_vocab_size(self) -> int:
        return self.vocab


def hand_nll(table: torch.Tensor, sequence: list[int]) -> float:
    """Summed NLL (nats) of a sequence under a Bigram table, the first token being context only."""
    logprobs = torch.log_softmax(table.double(), dim=-1)
    return -sum(logprobs[a, b].item() for a, b in zip(sequence[:-1], sequence[1:]))


def make_tokenizer(folder, texts: list[str], vocab_size: int = 500):
    """A small byte-level BPE folder as the tokenizer stage writes it (tokenizer.json + tokenizer_config.json)."""
    import json

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": specials[0], "eos_token": specials[1], "pad_token": specials[2],
        "added_tokens_decoder": {str(i): {"content": t, "special": True} for i, t in enumerate(specials)}}))
    return tokenizer


def fake_run(root, evaluate: dict | None = None):
    """A run folder as the stages before evaluate leave it, with a random tiny model; returns (recipe, run_dir)."""
    import json
    import random
    from pathlib import Path

    import numpy as np
    from fournil.corpus.documents import read_documents, write_documents
    from fournil.mixture.canaries import make_canaries
    from fournil.mixture.config import CanaryConfig
    from fournil.model.io import save_model
    from fournil.model.llama import Llama
    from fournil.model.presets import PRESETS
    from fournil.recipe import parse_recipe

    sample = Path(__file__).resolve().parents[1] / "data" / "sample"
    run_dir = Path(root) / "runs" / "mini"
    texts = {lang: [d["text"][:600] for d, _ in zip(read_documents(sample / lang / "gnome-user-docs.jsonl.zst"), range(12))]
             for lang in ("en", "fr")}
    tok_dir = run_dir / "tokenizer"
    tokenizer = make_tokenizer(tok_dir, [t for ts in texts.values() for t in ts])
    for lang, docs in texts.items():
        rows = [{"id": f"{lang}-{i}", "text": t, "lang": lang, "source": "maint", "category": "doc", "license": "GPL"} for i, t in enumerate(docs)]
        write_documents(run_dir / "corpus" / "heldout" / lang / "maint" / "00000.jsonl.zst", rows[:4])
        ids = [i for t in docs[4:] for i in tokenizer.encode(t).ids + [1]]
        shard = run_dir / "mixture" / "shards" / lang / "maint"
        shard.parent.mkdir(parents=True, exist_ok=True)
        np.asarray(ids, dtype=np.uint16).tofile(shard.with_suffix(".bin"))
        shard.with_suffix(".json").write_text(json.dumps({"dtype": "uint16", "tokens": len(ids), "lang": lang}))
    canaries = make_canaries(tokenizer, CanaryConfig(count=1, lengths=[12], repeats=[1, 4]), 1000, seed=5)
    (run_dir / "mixture" / "canaries.json").write_text(json.dumps(canaries))
    torch.manual_seed(0)
    config = PRESETS["tiny"].__class__(**{**PRESETS["tiny"].__dict__, "vocab_size": tokenizer.get_vocab_size(), "context_length": 64})
    save_model(Llama(config), run_dir / "train" / "final")
    step = run_dir / "train" / "checkpoints" / "step_5"
    save_model(Llama(config), step)
    (step / "state.json").write_text(json.dumps({"step": 5, "tokens": 1000}))
    figures = {"corpus": {}, "tokenizer": {}, "mixture": {}, "train": {"steps": 10, "tokens": 2000}, "sft": {"instruction_tuned": False}}
    for stage, fig in figures.items():
        (run_dir / stage).mkdir(parents=True, exist_ok=True)
        (run_dir / stage / "manifest.json").write_text(json.dumps({"fingerprint": stage, "figures": fig}))
    recipe = parse_recipe({
        "name": "mini", "languages": {"en": 0.5, "fr": 0.5},
        "sources": [{"name": "en", "path": str(sample / "en" / "maint-guide.jsonl.zst"), "lang": "en", "license": "GPL"}],
        "evaluate": {"max_examples": 3, "max_new_tokens": 8, **(evaluate or {})}}, Path(root))
    random.seed(0)
    return recipe, run_dir
