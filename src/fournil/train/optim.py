"""The optimisers: AdamW alone, or Muon for the blocks' matrices with AdamW for the rest.

Muon (Jordan et al. 2024; nanochat and modded-nanogpt train with it) replaces each hidden matrix's
update by its momentum orthogonalised with a Newton–Schulz iteration. It takes AdamW's learning
rate and weight decay as they are, through Moonshot's RMS-matching rule (the update scaled by
0.2·sqrt(max(rows, cols)), Liu et al. 2025, "Muon is scalable for LLM training"), so one `train.lr`
and one schedule serve both optimisers. Embeddings, the output head and the norms stay on AdamW,
as every Muon recipe does: they are lookups or vectors, not linear maps of the residual stream.

`Muon` keeps torch.optim.Muon's arguments, checks and state (`momentum_buffer`) and adds what the
trainer needs: `found_inf` skips a step on the device, leaving weights and momentum untouched, as
the fused AdamW does, so the hot path never waits for the device; and under FSDP2 each sharded
matrix is gathered for the iteration and its shard of the result kept.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributed.tensor import DTensor, distribute_tensor

from fournil.train.config import TrainConfig
from fournil.train.distributed import unwrap

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # Jordan's quintic: the steepest slope at zero that still converges near 1


def orthogonalize(matrix: Tensor, steps: int, coefficients: tuple[float, float, float], eps: float) -> Tensor:
    """U·S'·Vᵀ with S' ≈ 1 from G = U·S·Vᵀ, by `steps` quintic Newton–Schulz iterations: bf16 on an
    accelerator, where it is fast; float32 on the CPU, where bf16 matmuls are slower, not faster."""
    a, b, c = coefficients
    x = matrix.to(torch.float32 if matrix.device.type == "cpu" else torch.bfloat16)
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.T
    x = x / x.norm().clamp(min=eps)  # spectral norm ≤ Frobenius norm ≤ 1
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if tall else x


def _local(tensor: Tensor) -> Tensor:
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


class Muon(torch.optim.Muon):
    """torch.optim.Muon with a device-side skip (`found_inf`) and FSDP2-sharded matrices."""

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001, ANN201
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        found_inf = getattr(self, "found_inf", None)
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            keep = 1.0 - found_inf.to(params[0].device) if found_inf is not None else torch.ones((), device=params[0].device)
            for param in params:
                self._update(param, group, keep)
        return loss

    def _update(self, param: Tensor, group: dict, keep: Tensor) -> None:
        state = self.state[param]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(param.grad, memory_format=torch.preserve_format)
        grad, buf, weight = _local(param.grad), _local(state["momentum_buffer"]), _local(param)
        momentum = group["momentum"]
        grad = torch.where(keep > 0, grad, 0.0)  # a skipped step's gradient may be NaN; 0 · NaN would still be NaN
        buf.lerp_(grad, (1 - momentum) * keep)
        update = grad.lerp(buf, momentum) if group["nesterov"] else buf
        if isinstance(param, DTensor):
            whole = DTensor.from_local(update, param.device_mesh, param.placements, shape=param.shape, stride=param.stride())
            ortho = orthogonalize(whole.full_tensor(), group["ns_steps"], group["ns_coefficients"], group["eps"])
            ortho = distribute_tensor(ortho, param.device_mesh, param.placements, src_data_rank=None).to_local()
        else:
            ortho = orthogonalize(update, group["ns_steps"], group["ns_coefficients"], group["eps"])
        rows, cols = param.shape
        scaled_lr = group["lr"] * 0.2 * max(rows, cols) ** 0.5  # adjust_lr_fn="match_rms_adamw": the update's RMS is AdamW's
        weight.mul_(1 - group["lr"] * group["weight_decay"] * keep)
        weight.add_(ortho.to(weight.dtype) * (-scaled_lr * keep))


def hidden_matrices(model: nn.Module) -> set[nn.Parameter]:
    """The blocks' 2-D weights (attention and feed-forward projections): Muon's share."""
    return {p for p in unwrap(model).layers.parameters() if p.requires_grad and p.dim() == 2}


def build_optimizers(model: nn.Module, cfg: TrainConfig) -> list[torch.optim.Optimizer]:
    """[fused AdamW] or [Muon, fused AdamW], all at `train.lr`; AdamW decays matrices only, as
    nanoGPT and OLMo do."""
    params = [p for p in model.parameters() if p.requires_grad]
    muon = hidden_matrices(model) if cfg.optimizer == "muon" else set()
    rest = [p for p in params if p not in muon]
    adamw_groups = [
        {"params": [p for p in rest if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in rest if p.dim() < 2], "weight_decay": 0.0},
    ]
    adamw = torch.optim.AdamW([g for g in adamw_groups if g["params"]], lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                              eps=cfg.eps, fused=True)
    if not muon:
        return [adamw]
    matrices = [p for p in params if p in muon]  # the model's order, not a set's
    group = {"params": matrices}
    return [Muon([group], lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.muon_momentum, nesterov=True), adamw]
