"""What a training step holds, counted instead of estimated, so that `fournil plan`'s memory formula
(`plan.memory_per_gpu`) can be checked on any device, a CPU included.

Activations are the tensors autograd keeps for backward, seen through `saved_tensors_hooks` (each
storage once, the parameters themselves left out). A forward of one row and one of two rows tell the
bytes that grow with the tokens of a micro-batch from those that do not (autocast's bf16 copies of
the weights, the head's chunk). Optimiser state is the bytes of the tensors the optimiser holds after
a step. Recomputed blocks (activation checkpointing) keep their inputs outside autograd's saved
tensors, so only `activation_checkpointing: none` is counted this way; on CUDA the allocator's peak
(`torch.cuda.max_memory_allocated`) counts every mode.
"""

from __future__ import annotations

import torch
from torch import nn


def saved_bytes(model: nn.Module, rows: int, seq_len: int, bf16: bool) -> int:
    """Bytes of the distinct storages one forward keeps for backward, the parameters' own left out."""
    device = next(model.parameters()).device
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    kept: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            kept[storage.data_ptr()] = storage.nbytes()
        return tensor

    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(model.config.vocab_size, (rows, seq_len + 1), generator=generator).to(device)

    def forward() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            model(ids[:, :-1], targets=ids[:, 1:], reduction="sum")

    torch._dynamo.reset()  # compiled blocks compile again, statically for this shape as in training,
    forward()  # and here, outside the count: tracing packs tensors that a compiled step does not keep
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        forward()
    return sum(kept.values())


def activation_bytes(model: nn.Module, seq_len: int, bf16: bool = True) -> tuple[float, float]:
    """(bytes kept for backward per token of a micro-batch, bytes kept whatever its size)."""
    one, two = saved_bytes(model, 1, seq_len, bf16), saved_bytes(model, 2, seq_len, bf16)
    per_row = two - one
    return per_row / seq_len, float(one - per_row)


def state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Bytes of the weights, their gradients and the optimiser's state (call after a step)."""
    def size(tensors) -> int:
        return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))

    weights = size(model.parameters())
    gradients = size(p.grad for p in model.parameters() if p.grad is not None)
    moments = size(value for state in optimizer.state.values() for value in state.values()
                   if isinstance(value, torch.Tensor) and value.dim() > 0)
    return {"weights": weights, "gradients": gradients, "optimizer": moments, "total": weights + gradients + moments}
