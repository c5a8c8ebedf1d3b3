"""What the trainer watches: spikes, MFU, and the logs it writes (energy is in energy.py).

The spike guard lives on the device so that judging a step costs no host sync: the decision is a
0-d tensor handed to the fused optimizer as `found_inf`, which then leaves weights and moments
untouched.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from fournil.atomic import write_text
from fournil.hardware import GPUS

# Dense bf16 tensor-core peaks (FLOP/s) from the vendors' data sheets, matched against the device name.
PEAK_BF16_FLOPS: tuple[tuple[str, float], ...] = tuple((gpu.name, gpu.peak_bf16_flops) for gpu in GPUS)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"CPU {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def peak_flops(device: torch.device, override: float | None) -> tuple[float | None, str]:
    """Peak FLOP/s of one device and where the figure comes from."""
    if override:
        return override, "recipe train.peak_flops"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, flops in PEAK_BF16_FLOPS:
            if key in name:
                return flops, f"{key} dense bf16 data-sheet peak"
    return None, "unknown peak: set train.peak_flops to get MFU"


class SpikeGuard:
    """Judges each step against the recent accepted ones, on the device, without host syncs.

    A step is skipped when its loss or gradient norm is not finite, or (after `min_history`
    accepted steps) is more than `sigma` standard deviations above the mean of the last `window`
    accepted steps, as OLMo-core does. Skipped steps do not enter the window. `max_streak` records
    the longest run of consecutive skips since it was last reset, for the rollback decision.
    """

    def __init__(self, window: int, sigma: float, min_history: int, device: torch.device):
        self.window, self.sigma, self.min_history = window, sigma, min_history
        self.values = torch.zeros(2, window, device=device)
        self.accepted = torch.zeros((), dtype=torch.long, device=device)
        self.skipped = torch.zeros((), dtype=torch.long, device=device)
        self.streak = torch.zeros((), dtype=torch.long, device=device)
        self.max_streak = torch.zeros((), dtype=torch.long, device=device)
        self._slots = torch.arange(window, device=device)

    def check(self, loss: torch.Tensor, grad_norm: torch.Tensor) -> torch.Tensor:
        """A 0-d bool tensor: True when this step must be skipped."""
        x = torch.stack([loss.float(), grad_norm.float()])
        n = self.accepted.clamp(max=self.window)
        mask = (self._slots < n).float()
        mean = (self.values * mask).sum(1) / n.clamp(min=1)
        var = (((self.values - mean[:, None]) * mask) ** 2).sum(1) / (n - 1).clamp(min=1)
        std = torch.maximum(var.sqrt(), 1e-3 * mean.abs())
        spike = (n >= self.min_history) & (x > mean + self.sigma * std).any()
        skip = ~torch.isfinite(x).all() | spike
        slot = (self.accepted % self.window).reshape(1)
        kept = torch.where(skip, self.values.index_select(1, slot).squeeze(1), x)
        self.values.index_copy_(1, slot, kept.reshape(2, 1))
        self.accepted += (~skip).long()
        self.skipped += skip.long()
        self.streak = (self.streak + 1) * skip.long()
        self.max_streak = torch.maximum(self.max_streak, self.streak)
        return skip

    def state_dict(self) -> dict:
        return {"values": self.values.tolist(), "accepted": int(self.accepted), "skipped": int(self.skipped),
                "streak": int(self.streak)}

    def load_state_dict(self, state: dict) -> None:
        device = self.values.device
        self.values = torch.tensor(state["values"], dtype=torch.float32, device=device)
        self.accepted.fill_(state["accepted"])
        self.skipped.fill_(state["skipped"])
        self.streak.fill_(state["streak"])
        self.max_streak.zero_()


class RunLog:
    """log.jsonl always; TensorBoard when installed and wanted; Weights & Biases when configured."""

    def __init__(self, path: Path, tensorboard: bool, wandb_project: str | None, run_name: str, config: dict):
        self.path = path
        self._file = open(path, "a", encoding="utf-8")
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(path.parent / "tensorboard"))
            except ImportError:
                pass
        self._wandb = None
        if wandb_project:
            try:
                import wandb
            except ImportError:
                from fournil.errors import FournilError

                raise FournilError("train.wandb_project is set but wandb is not installed: pip install wandb, or remove the field") from None
            self._wandb = wandb.init(project=wandb_project, name=run_name, config=config, resume="allow")

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        step = record.get("step", 0)
        scalars = _scalars(record)
        if self._tb is not None:
            for key, value in scalars.items():
                self._tb.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(scalars, step=step)

    def flush(self) -> None:
        self._file.flush()
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def _scalars(record: dict, prefix: str = "") -> dict[str, float]:
    out = {}
    for key, value in record.items():
        if isinstance(value, dict):
            out.update(_scalars(value, f"{prefix}{key}/"))
        elif isinstance(value, int | float) and not isinstance(value, bool) and key != "step":
            out[prefix + key] = value
    return out


def truncate_lines(path: Path, keep: int) -> None:
    """Keep the first `keep` lines of a log (the ones written before the checkpoint we resume from)."""
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()[:keep]
    write_text(path, "".join(line if line.endswith("\n") else line + "\n" for line in lines))


def count_lines(path: Path) -> int:
    if not path.is_file():
        return 0
    with open(path, "rb") as f:
        return sum(1 for _ in f)
