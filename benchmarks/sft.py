"""SFT throughput against pretraining, on the same model, machine and loop, in the same run.

Four streams through fournil's `Trainer` (spike guard, clipping, per-language loss, logging):
plain pretraining rows, pretraining rows with document masking, and packed conversations (the
sft stage's sampler: whole conversations, assistant-only targets, a document id each), once with
every position through the output head and once as the stage runs, only the positions with a
target (about a third). Tokens/s counts every position of a row, padding included, so the ratio is
what packing, masking and the answer-only loss cost per position; the conversations' padding share
is printed beside it. Each stream runs `--repeats` times, interleaved, and its best run counts;
wall and process CPU time (user + sys, all threads) are both shown, since a shared machine slows
the wall clock and not the CPU time.

    python benchmarks/sft.py --tokenizer runs/demo/tokenizer      # the demo's shape on the CPU, the shipped fr/en conversations
    python benchmarks/sft.py --tokenizer runs/demo/tokenizer --steps 6 --micro-batch 8 --threads 1 --repeats 3   # a loaded machine
    python benchmarks/sft.py --tokenizer runs/mini/tokenizer --size ttl-160m --seq-len 2048   # CUDA: bf16, compiled block by block

On CUDA the loop is the train stage's (bf16 autocast, each block compiled), so the first run of each
stream pays its compilation: use `--repeats 2` or more there.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from fournil.mixture.sampler import Batch
from fournil.model.llama import Llama, LlamaConfig
from fournil.train.distributed import compile_model
from fournil.sft.conversations import read_conversations
from fournil.sft.packing import ConversationSampler, encode_all
from fournil.tokenizer import load
from fournil.train.config import TrainConfig
from fournil.train.distributed import Topology
from fournil.train import trainer as trainer_module
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


def timed(sampler, config: LlamaConfig, cfg: TrainConfig, out: Path) -> tuple[float, float]:
    """(tokens per wall second, tokens per CPU second) of one training run, as the train stage sets it up."""
    torch.manual_seed(0)
    device = torch.device(cfg.device)
    model = Llama(config).to(device)
    if device.type == "cuda":
        compile_model(model)
    trainer = Trainer(model, sampler, cfg, out, Topology(0, 1, 0, device), model_config=config.to_dict(),
                      seq_len=config.context_length, flops_per_token=model.flops_per_token(config.context_length), log=lambda m: None)
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.train()
    if device.type == "cuda":
        torch.cuda.synchronize()
    tokens = cfg.max_steps * trainer.batch_tokens
    return tokens / (time.perf_counter() - wall), tokens / (time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", type=Path, required=True,
                        help="a tokenizer folder, e.g. runs/demo/tokenizer (`fournil run recipes/demo.yaml --until tokenizer`)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--micro-batch", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each stream, interleaved; the best counts")
    parser.add_argument("--size", default="",
                        help="a model preset with overrides, as benchmarks/throughput.py --sizes takes one (ttl-160m, "
                             "ttl-160m:n_layers=4); default: the demo's shape")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tokenizer = load(args.tokenizer, special_strings_as_text=False)
    sources = []
    for name, lang in (("chatterbot-fr", 0), ("chatterbot-en", 1), ("translation-asked-in-fr", 0), ("translation-asked-in-en", 1)):
        sources.append((name, lang, list(read_conversations(DATA / f"{name}.jsonl", "auto", Counter()))))
    train, _, _ = encode_all(tokenizer, sources, args.seq_len, 1, 0.0, Counter())
    if args.size:
        from throughput import parse_size  # benchmarks/ is on the path when this script runs
        config = dataclasses.replace(parse_size(args.size)[1], vocab_size=tokenizer.get_vocab_size(), context_length=args.seq_len)
    else:
        config = LlamaConfig(vocab_size=tokenizer.get_vocab_size(), dim=256, n_layers=4, n_heads=4, n_kv_heads=4, ffn_dim=688,
                             context_length=args.seq_len, tie_embeddings=True)
    cfg = TrainConfig(max_steps=args.steps, global_batch_tokens=args.micro_batch * args.seq_len, micro_batch_size=args.micro_batch,
                      warmup_steps=2, checkpoint_every=10**6, log_every=5, tensorboard=False, document_masking=True,
                      device=args.device)

    def conversations() -> ConversationSampler:
        return ConversationSampler(train, [1.0] * len(train), ["fr", "en"], args.seq_len, args.micro_batch, seed=1, pad_id=2, epochs=3)

    def every_position_through_the_head(tmp: Path) -> tuple[float, float]:
        sparse, trainer_module.SPARSE_TARGETS = trainer_module.SPARSE_TARGETS, 0.0
        try:
            return timed(conversations(), config, cfg, tmp)
        finally:
            trainer_module.SPARSE_TARGETS = sparse

    streams = {
        "pretraining": lambda tmp: timed(Rows(config.vocab_size, args.seq_len, args.micro_batch, False), config,
                                         cfg.model_copy(update={"document_masking": False}), tmp),
        "pretraining, document masking": lambda tmp: timed(Rows(config.vocab_size, args.seq_len, args.micro_batch, True), config, cfg, tmp),
        "sft, every position in the head": every_position_through_the_head,
        "sft (packed, answer-only loss)": lambda tmp: timed(conversations(), config, cfg, tmp),
    }
    best: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for k, (name, run) in enumerate(streams.items()):
                wall, cpu = run(Path(tmp) / f"{repeat}-{k}")  # a fresh folder: a finished run's checkpoint would be resumed
                old = best.get(name, (0.0, 0.0))
                best[name] = (max(old[0], wall), max(old[1], cpu))
    sampler = conversations()
    rows, padding = sampler.rows_of_epoch(0), sampler.padding_share()
    trained = sum(int(train[i].trained[1:].sum()) for row in rows for i in row) / (len(rows) * args.seq_len)
    print(f"{len(train)} conversations, {len(rows)} rows of {args.seq_len} an epoch, padding {padding:.1%}, targets {trained:.1%} of positions; "
          f"{args.device}, {torch.get_num_threads()} threads, best of {args.repeats}; model {args.size or 'the demo shape'}")
    plain_wall, plain_cpu = best["pretraining"]
    print(f"{'stream':<34}{'tokens/s':>10}{'vs pretraining':>16}{'tokens/CPU s':>14}{'vs pretraining':>16}")
    for name, (wall, cpu) in best.items():
        print(f"{name:<34}{wall:>10,.0f}{wall / plain_wall:>16.3f}{cpu:>14,.0f}{cpu / plain_cpu:>16.3f}")


if __name__ == "__main__":
    main()
