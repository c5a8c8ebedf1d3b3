"""Everything that changes how the model runs, applied from outside it (as torchtitan does).

Activation checkpointing wraps blocks, torch.compile compiles each block and the head, and DDP or FSDP2 wraps the
whole model, so `fournil.model.llama` stays a plain single-device module. Processes come from
`torchrun` (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR in the environment): NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from fournil.model.io import pick_device


@dataclass(frozen=True)
class Topology:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device_choice: str) -> Topology:
    """This process's place in the job; joins the process group when torchrun started several."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_choice, "train.device", local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(minutes=30), device_id=device if device.type == "cuda" else None)
    return Topology(rank, world_size, local_rank, device)


def teardown(topology: Topology) -> None:
    if topology.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor, topology: Topology) -> torch.Tensor:
    if topology.distributed:
        dist.all_reduce(tensor)
    return tensor


def broadcast_object(value, topology: Topology):  # noqa: ANN001, ANN201
    """Rank 0's value on every rank."""
    if not topology.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(value, topology: Topology) -> list:  # noqa: ANN001
    """Every rank's value, in rank order, on every rank."""
    if not topology.distributed:
        return [value]
    out = [None] * topology.world_size
    dist.all_gather_object(out, value)
    return out


def _matmul_and_attention_ops() -> set:
    aten = torch.ops.aten
    names = ("mm", "addmm", "bmm", "_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
             "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_flash_attention_for_cpu")
    return {getattr(aten, name).default for name in names if hasattr(aten, name)}


_SAVED_OPS = _matmul_and_attention_ops()


def _save_only_matmuls(ctx, op, *args, **kwargs):  # noqa: ANN001, ANN202, ARG001
    """Keep what is costly to redo (matmuls, attention); recompute the elementwise rest."""
    from torch.utils.checkpoint import CheckpointPolicy

    return CheckpointPolicy.MUST_SAVE if op in _SAVED_OPS else CheckpointPolicy.PREFER_RECOMPUTE


def checkpoint_blocks(model: nn.Module, mode: str) -> None:
    """Recompute activations in backward, trading compute for memory: every block (full), every
    other block (selective), or in every block only the cheap elementwise ops (ops: norms, RoPE,
    SwiGLU's gate and the residual adds; the outputs of matmuls and attention are kept)."""
    if mode == "none":
        return
    from functools import partial

    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
    from torch.utils.checkpoint import create_selective_checkpoint_contexts

    options = {"context_fn": partial(create_selective_checkpoint_contexts, _save_only_matmuls)} if mode == "ops" else {}
    for i, block in enumerate(model.layers):
        if mode in ("full", "ops") or i % 2 == 0:
            model.layers[i] = checkpoint_wrapper(block, preserve_rng_state=False, **options)


def compile_model(model: nn.Module) -> None:
    """torch.compile in place, one region at a time: each block, then the final norm and the fused
    head. The blocks share one compiled graph (their weights are its inputs), so compile time does
    not grow with depth (3 graphs for any number of layers); nothing runs between blocks, so no
    fusion is lost against compiling the whole model; and FSDP2's per-block hooks stay outside."""
    for block in model.layers:
        block.compile()
    model.norm.compile()
    model.lm_head.compile()


def parallelize(model: nn.Module, topology: Topology, mode: str, bf16: bool) -> nn.Module:
    """DDP or FSDP2 over the process group; the model itself when there is one process."""
    if not topology.distributed:
        return model
    if mode == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        # the model returns losses.view(B, T); the trainer never writes into it in place
        warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else MixedPrecisionPolicy()
        for block in model.layers:
            fully_shard(block, mp_policy=policy)
        fully_shard(model, mp_policy=policy)
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [topology.device.index] if topology.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The Llama under a DDP wrapper (FSDP2 shards in place, so there is nothing to peel)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
