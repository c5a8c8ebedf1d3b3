"""SFT throughput against pretraining, on the same model, machine and loop, in the same run.

Three streams through fournil's `Trainer` (spike guard, clipping, per-language loss, logging):
plain pretraining rows, pretraining rows with document masking, and packed conversations (the
sft stage's sampler: whole conversations, assistant-only targets, a document id each). Tokens/s
counts every position of a row, padding included, so the ratio is what packing and masking cost
per position; the conversations' padding share is printed beside it.

    python benchmarks/sft.py --tokenizer runs/demo/tokenizer      # the demo's shape on the CPU, the shipped fr/en conversations
    python benchmarks/sft.py --tokenizer runs/demo/tokenizer --steps 30 --micro-batch 8 --seq-len 512
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from fournil.mixture.sampler import Batch
from fournil.model.llama import Llama, LlamaConfig
from fournil.sft.conversations import read_conversations
from fournil.sft.packing import ConversationSampler, encode_all
from fournil.tokenizer import load
from fournil.train.config import TrainConfig
from fournil.train.distributed import Topology
from fournil.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "instructions"


class Rows:
    """Pretraining-shaped batches: random documents of a few hundred tokens packed end to end."""

    languages = ["fr", "en"]

    def __init__(self, vocab: int, seq_len: int, batch: int, masking: bool, eos: int = 1):
        self.vocab, self.seq_len, self.batch, self.masking, self.eos, self.sequence = vocab, seq_len, batch, masking, eos, 0

    def next_batch(self) -> Batch:
        rng = np.random.default_rng(self.sequence)
        rows = rng.integers(16, self.vocab, (self.batch, self.seq_len + 1))
        rows[rng.random(rows.shape) < 1 / 300] = self.eos
        self.sequence += self.batch
        inputs, targets = torch.from_numpy(rows[:, :-1]), torch.from_numpy(rows[:, 1:])
        docs = torch.cumsum(inputs == self.eos, 1) if self.masking else None
        langs = torch.zeros_like(inputs)
        return Batch(inputs.contiguous(), targets.contiguous(), langs, {}, docs)

    def state_dict(self) -> dict:
        return {"sequence": self.sequence}

    def load_state_dict(self, state: dict) -> None:
        self.sequence = state["sequence"]


def timed(sampler, config: LlamaConfig, cfg: TrainConfig, out: Path) -> float:
    torch.manual_seed(0)
    model = Llama(config)
    trainer = Trainer(model, sampler, cfg, out, Topology(0, 1, 0, torch.device("cpu")), model_config=config.to_dict(),
                      seq_len=config.context_length, flops_per_token=model.flops_per_token(config.context_length), log=lambda m: None)
    t0 = time.perf_counter()
    trainer.train()
    return cfg.max_steps * trainer.batch_tokens / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", type=Path, required=True,
                        help="a tokenizer folder, e.g. runs/demo/tokenizer (`fournil run recipes/demo.yaml --until tokenizer`)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--micro-batch", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=256)
    args = parser.parse_args()
    tokenizer = load(args.tokenizer, special_strings_as_text=False)
    sources = []
    for name, lang in (("chatterbot-fr", 0), ("chatterbot-en", 1), ("translation-asked-in-fr", 0), ("translation-asked-in-en", 1)):
        sources.append((name, lang, list(read_conversations(DATA / f"{name}.jsonl", "auto", Counter()))))
    train, _, _ = encode_all(tokenizer, sources, args.seq_len, 1, 0.0, Counter())
    config = LlamaConfig(vocab_size=tokenizer.get_vocab_size(), dim=256, n_layers=4, n_heads=4, n_kv_heads=4, ffn_dim=688,
                         context_length=args.seq_len, tie_embeddings=True)
    cfg = TrainConfig(max_steps=args.steps, global_batch_tokens=args.micro_batch * args.seq_len, micro_batch_size=args.micro_batch,
                      warmup_steps=2, checkpoint_every=10**6, log_every=5, tensorboard=False, document_masking=True)
    conversations = ConversationSampler(train, [1.0] * len(train), ["fr", "en"], args.seq_len, args.micro_batch, seed=1, pad_id=2, epochs=3)
    rows, padding = conversations.rows_of_epoch(0), conversations.padding_share()
    with tempfile.TemporaryDirectory() as tmp:
        plain = timed(Rows(config.vocab_size, args.seq_len, args.micro_batch, False), config, cfg.model_copy(update={"document_masking": False}), Path(tmp) / "a")
        masked = timed(Rows(config.vocab_size, args.seq_len, args.micro_batch, True), config, cfg, Path(tmp) / "b")
        sft = timed(conversations, config, cfg, Path(tmp) / "c")
    print(f"{len(train)} conversations, {len(rows)} rows of {args.seq_len} an epoch, padding {padding:.1%}; {torch.get_num_threads()} threads")
    print(f"{'stream':<34}{'tokens/s':>10}{'vs pretraining':>16}")
    for name, rate in (("pretraining", plain), ("pretraining, document masking", masked), ("sft (packed, assistant-only)", sft)):
        print(f"{name:<34}{rate:>10,.0f}{rate / plain:>16.3f}")


if __name__ == "__main__":
    main()
