"""`fournil plan`'s memory formula against what training holds, counted.

For each shape, the activation bytes per token that autograd keeps for backward (fournil.train.memory:
every saved storage once, at one and two rows) beside `plan.activations_per_token`, with compiled blocks
and eager, and their ratio. On CUDA it also trains one step of the shape with fused AdamW and prints
the allocator's peak beside the formula's total less the CUDA context.

    python benchmarks/memory.py                       # CPU: a few shapes, about a minute
    python benchmarks/memory.py --sizes ttl-160m --rows 8 --seq-len 2048   # on a GPU: the allocator's peak too
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from fournil import plan
from fournil.model.llama import Llama
from fournil.model.presets import PRESETS
from fournil.train.config import TrainConfig
from fournil.train.distributed import compile_model
from fournil.train.memory import activation_bytes

CPU_SIZES = {  # dim, ffn and GQA ratios of the reference presets at widths a CPU compiles in seconds
    "demo": ("ttl-160m", {"dim": 256, "n_heads": 4, "n_kv_heads": 4, "ffn_dim": 688, "vocab_size": 8192}),
    "ttl-160m/2": ("ttl-160m", {"n_layers": 2, "vocab_size": 8192}),
    "croissant/w512": ("croissant-1.3b", {"dim": 512, "n_heads": 8, "n_kv_heads": 8, "ffn_dim": 1408, "n_layers": 2}),
    "lucie-gqa/w512": ("lucie-7b", {"dim": 512, "n_heads": 8, "n_kv_heads": 2, "ffn_dim": 1792, "n_layers": 2,
                                    "vocab_size": 16384}),
}


def shape(name: str):
    preset, changes = CPU_SIZES.get(name, (name, {}))
    return dataclasses.replace(PRESETS[preset], **changes)


def cuda_peak(config, rows: int, seq_len: int) -> float:
    """Peak bytes the allocator held over one compiled training step (forward, backward, fused AdamW)."""
    model = Llama(config).cuda()
    compile_model(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    ids = torch.randint(config.vocab_size, (rows, seq_len + 1), device="cuda")
    for _ in range(2):  # the second step: compiled, and the moments exist
        torch.cuda.reset_peak_memory_stats()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss, _ = model(ids[:, :-1], targets=ids[:, 1:], reduction="sum")
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return float(torch.cuda.max_memory_allocated())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=",".join(CPU_SIZES), help="shapes: names above or presets")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--rows", type=int, default=4, help="micro-batch rows for the CUDA step")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"{'shape':<16} {'mode':<9} {'counted B/token':>16} {'formula B/token':>16} {'formula/counted':>16}")
    for name in args.sizes.split(","):
        config = dataclasses.replace(shape(name), context_length=args.seq_len)
        for compiled in (True, False):
            torch.manual_seed(0)
            model = Llama(config).to(device)
            if compiled:
                compile_model(model)
            counted, _ = activation_bytes(model, args.seq_len)
            formula = plan.activations_per_token(config, compiled)
            print(f"{name:<16} {'compiled' if compiled else 'eager':<9} {counted:>16,.0f} {formula:>16,.0f} {formula / counted:>16.3f}")
        if device == "cuda":
            train = TrainConfig(optimizer="adamw", compile="on", micro_batch_size=args.rows)
            expected = plan.training_bytes(config, train, 1)["total"] - plan.CUDA_OVERHEAD_BYTES
            peak = cuda_peak(config, args.rows, args.seq_len)
            print(f"{name:<16} CUDA step: allocator peak {peak / 1e9:.2f} GB, formula without the CUDA context "
                  f"{expected / 1e9:.2f} GB, formula / peak {expected / peak:.3f}")


if __name__ == "__main__":
    main()
