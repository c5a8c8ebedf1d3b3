"""Training throughput of fournil's Llama against transformers' LlamaForCausalLM, in the same run.

Both models start from the same weights and train the same batches (fused AdamW, torch.compile,
bf16 autocast on CUDA; fournil compiled block by block as its trainer does, transformers whole).
The table shows tokens/s, MFU against a measured matmul ceiling, fournil's peak memory (CUDA), the
ratio and the first losses (equal when both compute the same thing). The trainer columns time fournil's
full `Trainer` (spike guard, clipping, per-language loss, a log line per step) on the same batches,
with the bare loop's fused AdamW unless `--trainer-optimizer muon` (fournil's default, whose
Newton–Schulz steps cost the same per step whatever the batch, so their share shrinks as the batch
grows); `tr/bare` is its ratio to the bare fournil loop (the issue's target: ≥ 0.97).

    python benchmarks/throughput.py                                  # CUDA: ttl-160m, ttl-460m, croissant-1.3b at 2048
    python benchmarks/throughput.py --sizes cpu-s,cpu-m              # the CPU default (small shapes, a few minutes)
    python benchmarks/throughput.py --sizes ttl-160m:n_layers=2 --seq-len 512 --steps 5
    python benchmarks/throughput.py --sizes croissant-1.3b --batch 8 --activation-checkpointing ops

A size is a preset name, optionally followed by `:field=value` overrides (vocab_size included).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from fournil.model.hf import hf_config, hf_name
from fournil.model.io import state_tensors
from fournil.model.llama import Llama, LlamaConfig
from fournil.model.presets import PRESETS
from fournil.train.distributed import checkpoint_blocks, compile_model

CPU_SIZES = {  # shapes a 2-core CPU trains a few steps of in seconds
    "cpu-s": "ttl-160m:dim=256:n_layers=4:n_heads=4:n_kv_heads=4:ffn_dim=1024:vocab_size=8192",
    "cpu-m": "ttl-160m:dim=512:n_layers=4:n_heads=8:n_kv_heads=8:ffn_dim=1536:vocab_size=16384",
}
CUDA_BATCH = {"ttl-160m": 16, "ttl-460m": 8, "croissant-1.3b": 4}


def parse_size(spec: str) -> tuple[str, LlamaConfig]:
    spec = CPU_SIZES.get(spec, spec)
    name, *overrides = spec.split(":")
    fields = {f.name: f.type for f in dataclasses.fields(LlamaConfig)}
    changes = {}
    for item in overrides:
        key, _, value = item.partition("=")
        changes[key] = {"int": int, "float": float, "bool": lambda v: v.lower() in ("1", "true", "yes")}[fields[key]](value)
    return spec, dataclasses.replace(PRESETS[name], **changes)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def matmul_ceiling(device: str, dtype: torch.dtype) -> float:
    """FLOP/s of a large square matmul (best of 10): the ceiling MFU is measured against."""
    n = 8192 if device == "cuda" else 1024
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    best = float("inf")
    for _ in range(10):
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def hf_model(config: LlamaConfig, ours: Llama):
    """transformers' Llama with the same shape and weights."""
    import transformers

    data = hf_config(config, {"bos": None, "eos": None, "pad": None}, torch.float32)
    data.pop("architectures")
    data.pop("model_type")
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**data))
    model.load_state_dict({hf_name(k): v for k, v in state_tensors(ours).items()}, strict=not config.tie_embeddings)
    return model


def train(model: torch.nn.Module, is_fournil: bool, batches: list[tuple[torch.Tensor, torch.Tensor]], args, device: str) -> tuple[float, float]:
    """Tokens per second (median step after the warm-up: robust to a busy machine), and the first loss."""
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    try:
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    except RuntimeError:  # a build without a fused kernel for this device
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def loss_of(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if is_fournil:
            total, _ = model(x, y, reduction="sum")  # the fused head the trainer uses
            return total / y.numel()
        return model(input_ids=x, labels=y, shift_labels=y).loss  # labels already shifted

    step = loss_of
    if is_fournil:
        checkpoint_blocks(model, args.activation_checkpointing)
    if args.compile and is_fournil and not args.compile_whole:
        compile_model(model)  # as the trainer does: each block, then the norm and the fused head
    elif args.compile:
        step = torch.compile(loss_of)  # transformers' users compile the whole model
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")
    first, times = None, []
    for x, y in batches:
        sync(device)
        start = time.perf_counter()
        with autocast:
            loss = step(x, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        times.append(time.perf_counter() - start)
        if first is None:
            first = loss.item()
    return batches[0][0].numel() / statistics.median(times[args.warmup:]), first


class TimedBatches:
    """A sampler over fixed batches that notes, after a device sync, when each step asks for data:
    the time between two asks is one whole trainer step (host work, device work, log flushes)."""

    languages = ["fr", "en"]

    def __init__(self, batches: list[tuple[torch.Tensor, torch.Tensor]], device: str):
        self.batches, self.device, self.index, self.asked = batches, device, 0, []

    def next_batch(self):
        from fournil.mixture.sampler import Batch

        sync(self.device)
        self.asked.append(time.perf_counter())
        x, y = self.batches[self.index % len(self.batches)]
        self.index += 1
        lang = (torch.arange(x.shape[0]) % 2)[:, None].expand(x.shape).contiguous()  # two languages, per-language loss on
        return Batch(x.cpu(), y.cpu(), lang, {}, None)

    def state_dict(self) -> dict:
        return {"index": self.index}

    def load_state_dict(self, state: dict) -> None:
        self.index = state["index"]


def train_with_trainer(config: LlamaConfig, batches: list[tuple[torch.Tensor, torch.Tensor]], args, device: str) -> float:
    """Tokens per second (median step after the warm-up) of fournil's full Trainer: fused AdamW, spike
    guard, per-language loss, clipping, a log line per step (flushed every 10), the same compile."""
    import tempfile
    from pathlib import Path

    from fournil.train.config import TrainConfig
    from fournil.train.distributed import Topology
    from fournil.train.trainer import Trainer

    torch.manual_seed(0)
    model = Llama(config).to(device)
    checkpoint_blocks(model, args.activation_checkpointing)
    if args.compile:
        compile_model(model)
    x = batches[0][0]
    steps = len(batches)
    cfg = TrainConfig(max_steps=steps + 1,  # one more ask of the sampler closes the last timed step
                      global_batch_tokens=x.numel(), micro_batch_size=x.shape[0], lr=1e-4, warmup_steps=0,
                      checkpoint_every=10**9, log_every=10, tensorboard=False, device=device, optimizer=args.trainer_optimizer)
    sampler = TimedBatches(batches + batches[:1], device)
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(model, sampler, cfg, Path(out), Topology(0, 1, 0, torch.device(device)), model_config=config.to_dict(),
                          seq_len=x.shape[1], flops_per_token=model.flops_per_token(x.shape[1]), log=lambda message: None)
        trainer._loop()
    times = [b - a for a, b in zip(sampler.asked, sampler.asked[1:])]
    return x.numel() / statistics.median(times[args.warmup:])


def main() -> None:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="ttl-160m,ttl-460m,croissant-1.3b" if cuda else "cpu-s,cpu-m")
    parser.add_argument("--seq-len", type=int, default=2048 if cuda else 256)
    parser.add_argument("--batch", type=int, default=0, help="micro-batch; default: per size on CUDA, 4 on CPU")
    parser.add_argument("--steps", type=int, default=10 if cuda else 4, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3 if cuda else 2, help="untimed steps (compilation) before them")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--compile-whole", action="store_true",
                        help="compile fournil's bare loop whole, as transformers' is, instead of block by block (the trainer's way)")
    parser.add_argument("--activation-checkpointing", choices=["none", "ops", "selective", "full"], default="none",
                        help="fournil's model only (memory for compute, to fit a larger --batch); see docs/train.md")
    parser.add_argument("--peer", action=argparse.BooleanOptionalAction, default=True, help="also train transformers' Llama")
    parser.add_argument("--trainer", action=argparse.BooleanOptionalAction, default=True,
                        help="also time fournil's full Trainer (logging, spike guard, per-language loss) on the same batches")
    parser.add_argument("--trainer-optimizer", choices=["adamw", "muon"], default="adamw",
                        help="the trainer's optimizer: adamw, as the bare loop (tr/bare is then the trainer's own cost), or muon")
    args = parser.parse_args()
    device = "cuda" if cuda else "cpu"
    dtype = torch.bfloat16 if cuda else torch.float32
    torch.set_float32_matmul_precision("high")
    ceiling = matmul_ceiling(device, dtype)
    print(f"device {torch.cuda.get_device_name() if cuda else 'cpu'} ({torch.get_num_threads()} threads), torch {torch.__version__}, "
          f"{'bf16 autocast' if cuda else 'float32'}, compile {args.compile}{' (whole)' if args.compile_whole else ''}, seq {args.seq_len}, "
          f"activation checkpointing {args.activation_checkpointing}, "
          f"matmul ceiling {ceiling / 1e12:.2f} TFLOP/s")
    header = (f"{'size':<16}{'params':>9}{'batch':>6}{'fournil tok/s':>15}{'MFU':>7}{'GiB':>6}"
              + (f"{'trainer tok/s':>14}{'MFU':>7}{'tr/bare':>9}" if args.trainer else "")
              + f"{'HF tok/s':>12}{'MFU':>7}{'ratio':>7}  first loss (fournil / HF)")
    print(header)
    for spec in args.sizes.split(","):
        name, config = parse_size(spec)
        config = dataclasses.replace(config, context_length=max(config.context_length, args.seq_len))
        batch = args.batch or CUDA_BATCH.get(name, 4) if cuda else args.batch or 4
        generator = torch.Generator().manual_seed(0)
        rows = [torch.randint(0, config.vocab_size, (batch, args.seq_len + 1), generator=generator).to(device)
                for _ in range(args.warmup + args.steps)]
        batches = [(r[:, :-1].contiguous(), r[:, 1:].contiguous()) for r in rows]
        torch.manual_seed(0)
        ours = Llama(config).to(device)
        peer = hf_model(config, ours).to(device) if args.peer else None
        flops = ours.flops_per_token(args.seq_len)
        rate, loss = train(ours, True, batches, args, device)
        # each figure is printed as soon as it is measured: a run stopped at a time limit keeps what it had
        peak = f"{torch.cuda.max_memory_allocated() / 2**30:>6.1f}" if cuda else f"{'-':>6}"  # the bare loop's peak: room for a larger --batch?
        print(f"{spec.split(':')[0]:<16}{ours.num_params() / 1e6:>8.1f}M{batch:>6}{rate:>15,.0f}{flops * rate / ceiling:>7.1%}{peak}", end="", flush=True)
        del ours
        if args.trainer:
            trainer_rate = train_with_trainer(config, batches, args, device)
            print(f"{trainer_rate:>14,.0f}{flops * trainer_rate / ceiling:>7.1%}{trainer_rate / rate:>9.3f}", end="", flush=True)
        if peer is not None:
            peer_rate, peer_loss = train(peer, False, batches, args, device)
            print(f"{peer_rate:>12,.0f}{flops * peer_rate / ceiling:>7.1%}{rate / peer_rate:>7.2f}  {loss:.4f} / {peer_loss:.4f}", end="")
            del peer
        print(flush=True)
        if cuda:
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
