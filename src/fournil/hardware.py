"""Accelerators by name: dense bf16 peak, memory and board power, from the vendors' data sheets.

The trainer reads the peaks for MFU; `fournil plan` reads all three to say whether a recipe fits and
what it costs. Kept free of torch so that planning a recipe stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass

from fournil.errors import FournilError


@dataclass(frozen=True)
class GPU:
    name: str
    peak_bf16_flops: float  # dense tensor-core FLOP/s
    memory_gb: float  # GB = 1e9 bytes, as the data sheets count
    watts: float  # board power (TDP)


# Matched in this order against a device's name, so the more specific names come first.
GPUS: tuple[GPU, ...] = (
    GPU("B200", 2.25e15, 192, 1000), GPU("H200", 989e12, 141, 700), GPU("H100 PCIe", 756e12, 80, 350),
    GPU("H100 NVL", 835e12, 94, 400), GPU("H100", 989e12, 80, 700), GPU("H800", 989e12, 80, 700),
    GPU("A100", 312e12, 80, 400), GPU("A100-40GB", 312e12, 40, 400), GPU("A800", 312e12, 80, 400), GPU("L40S", 362e12, 48, 350),
    GPU("L40", 181e12, 48, 300), GPU("L4", 121e12, 24, 72), GPU("A10G", 70e12, 24, 300), GPU("A10", 125e12, 24, 150),
    GPU("RTX 4090", 165e12, 24, 450), GPU("RTX 3090", 71e12, 24, 350), GPU("V100", 125e12, 32, 300),
    GPU("T4", 65e12, 16, 70),
)


def find_gpu(name: str) -> GPU | None:
    """The first known GPU whose name is part of `name` (a device name such as 'NVIDIA H100 80GB HBM3')."""
    return next((gpu for gpu in GPUS if gpu.name.lower() in name.lower()), None)


def gpu_named(name: str) -> GPU:
    """A known GPU by its name, or a one-line error listing the known ones."""
    gpu = next((g for g in GPUS if g.name.lower() == name.lower()), None) or find_gpu(name)
    if gpu is None:
        raise FournilError(f"plan.gpu = {name!r}: unknown GPU; choose one of {', '.join(g.name for g in GPUS)}")
    return gpu
