"""Tiny stand-ins for trainer tests: a learnable toy stream, a tiny Llama, and a script entry point.

The toy sampler follows MixtureSampler's contract (sequence s is a pure function of s; call c of
rank r reads sequences (c·world_size + r)·B onward), so one process with accumulation 2 and two
processes with accumulation 1 see the same global batches. Sequences listed in `poison` carry the
token POISON; `poisoned_model` multiplies the loss of a batch holding it, to inject NaNs or spikes
(it serves the trainer's call, `reduction="sum"`).

Run as a script (alone, or under torchrun) it trains and exits:
    python tests/train_helpers.py OUT MAX_STEPS [--parallelism ddp,fsdp,fsdp-compiled] [--checkpoint-every N] [--codecarbon-country FRA]
                                  [--optimizer adamw]
With several parallelisms, each trains from scratch into OUT/<parallelism>/; `-compiled` applies
torch.compile first, as the train stage does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from fournil.mixture.sampler import Batch
from fournil.model.llama import Llama, LlamaConfig
from fournil.train.config import TrainConfig
from fournil.train.distributed import Topology, compile_model, parallelize, setup
from fournil.train.trainer import Interrupted, Trainer

SEQ_LEN = 32
POISON = 127
MODEL = LlamaConfig(vocab_size=128, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=64, context_length=SEQ_LEN)


class ToySampler:
    languages = ["fr", "en"]

    def __init__(self, batch_size: int, rank: int = 0, world_size: int = 1, poison: range = range(0)):
        self.batch_size, self.rank, self.world_size, self.poison = batch_size, rank, world_size, poison
        self.sequence = 0

    def _row(self, s: int) -> torch.Tensor:
        start = int(torch.randint(0, 97, (1,), generator=torch.Generator().manual_seed(s)))
        row = (torch.arange(SEQ_LEN + 1) * (1 + s % 3) + start) % 97
        if s in self.poison:
            row[5] = POISON
        return row

    def next_batch(self) -> Batch:
        B = self.batch_size
        first = self.sequence + self.rank * B
        rows = torch.stack([self._row(s) for s in range(first, first + B)])
        self.sequence += B * self.world_size
        langs = torch.tensor([s % 2 for s in range(first, first + B)])[:, None].expand(B, SEQ_LEN).contiguous()
        targets = rows[:, 1:].clone()
        targets[:, :2] = -100  # some ignored targets, as document masking leaves
        return Batch(rows[:, :-1].contiguous(), targets, langs, {}, None)

    def state_dict(self) -> dict:
        return {"sequence": self.sequence}

    def load_state_dict(self, state: dict) -> None:
        self.sequence = state["sequence"]


def tiny_model(seed: int = 0) -> Llama:
    torch.manual_seed(seed)
    return Llama(MODEL)


def poisoned_model(model: Llama, factor: float) -> Llama:
    """`model`, whose loss is multiplied by `factor` on batches holding the POISON token."""
    forward = model.forward

    def poisoned(input_ids, targets, document_ids=None, reduction="sum", z_loss=0.0, target_rows=None):  # noqa: ANN001, ANN202
        total, ce = forward(input_ids, targets=targets, document_ids=document_ids, reduction=reduction, z_loss=z_loss, target_rows=target_rows)
        factor_here = torch.where((input_ids == POISON).any(), torch.tensor(factor, device=ce.device), torch.tensor(1.0, device=ce.device))
        return total * factor_here, ce * factor_here

    model.forward = poisoned
    return model


def config(**fields) -> TrainConfig:
    base = dict(max_steps=30, global_batch_tokens=4 * SEQ_LEN * 2, micro_batch_size=4, lr=1e-2, warmup_steps=5,
                checkpoint_every=10, keep_last=3, log_every=5, tensorboard=False, spike_min_history=8)
    return TrainConfig(**{**base, **fields})


def make_trainer(out: Path, cfg: TrainConfig, topology: Topology | None = None, model: Llama | None = None,
                 poison: range = range(0), parallelism: str = "ddp") -> Trainer:
    topology = topology or Topology(0, 1, 0, torch.device("cpu"))
    model = model or tiny_model()
    flops = model.flops_per_token(SEQ_LEN)
    model = parallelize(model, topology, parallelism, bf16=False)
    sampler = ToySampler(cfg.micro_batch_size, topology.rank, topology.world_size, poison)
    return Trainer(model, sampler, cfg, out, topology, model_config=MODEL.to_dict(), seq_len=SEQ_LEN,
                   flops_per_token=flops, log=lambda message: print(message, file=sys.stderr))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("max_steps", type=int)
    parser.add_argument("--parallelism", default="ddp")
    parser.add_argument("--checkpoint-every", type=int, default=10)
    parser.add_argument("--codecarbon-country", default=None, help="also run codecarbon's tracker on every rank")
    parser.add_argument("--optimizer", default=TrainConfig.model_fields["optimizer"].default)
    args = parser.parse_args()
    torch.set_num_threads(1)
    topology = setup("cpu")
    cfg = config(max_steps=args.max_steps, checkpoint_every=args.checkpoint_every, log_every=1, codecarbon_country=args.codecarbon_country,
                 optimizer=args.optimizer)
    modes = args.parallelism.split(",")
    for mode in modes:
        out = args.out / mode if len(modes) > 1 else args.out
        model = tiny_model()
        if mode.endswith("-compiled"):
            compile_model(model)
        try:
            make_trainer(out, cfg, topology, model=model, parallelism=mode.removesuffix("-compiled")).train()
        except Interrupted:
            sys.exit(143)


if __name__ == "__main__":
    main()
