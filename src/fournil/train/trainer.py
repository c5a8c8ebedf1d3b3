"""The training loop: one optimiser step = gradient accumulation to the global batch, guarded.

A step reads `accumulation` micro-batches per process, sums the per-token losses and divides by
the number of target tokens of the whole global batch (known before the forward passes, from the
batches on the host), so one process with accumulation A×P and P processes with A give the same
gradients. The spike guard judges the step on the device and the optimisers (fused AdamW, Muon)
skip it through their `found_inf` input, so the hot path never waits for the device: the host
reads the step records once every `log_every` steps, writes one log line per step, and decides on
rollbacks then.
"""

from __future__ import annotations

import base64
import contextlib
import math
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from fournil.errors import FournilError
from fournil.train import checkpoint as ckpt
from fournil.train.config import TrainConfig
from fournil.train.distributed import Topology, all_reduce_sum, broadcast_object, gather_objects, unwrap
from fournil.train.energy import RunEnergy
from fournil.train.monitor import RunLog, SpikeGuard, device_name, peak_flops, truncate_lines
from fournil.train.optim import build_optimizers
from fournil.train.schedule import lr_at

IGNORE = -100
# Below this share of positions with a target (SFT's answer-only loss: about a third), only those go
# through the output head; pretraining's few ignored document ends are not worth the gather.
SPARSE_TARGETS = 0.9
# A compiled head specialises on how many rows it gets (its chunk loop is Python): the rows are padded
# up to a multiple of this share of the positions, so a run compiles it a few times, not every step
# (torch.compile gives up on a region after 8 shapes and runs it eager from then on).
HEAD_ROWS_STEP = 1 / 4
FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)
FINAL_WINDOW = 20  # steps the final loss is averaged over


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGINT arrived; a checkpoint was written and the same command resumes."""


def accumulation_steps(cfg: TrainConfig, seq_len: int, world_size: int) -> int:
    """Micro-batches per process and step to reach the recipe's global batch (at least one)."""
    per_micro = cfg.micro_batch_size * seq_len * world_size
    return max(1, round(cfg.global_batch_tokens / per_micro))


def head_rows(valid: torch.Tensor) -> torch.Tensor | None:
    """The flat positions that go through the output head, in order: every one with a target, padded
    with target-less ones (they add nothing to the loss or the gradients) up to a multiple of
    HEAD_ROWS_STEP of the positions; None (all of them) when most positions have a target."""
    flat = valid.flatten()
    targets, step = int(flat.sum()), max(1, math.ceil(flat.numel() * HEAD_ROWS_STEP))
    size = min(flat.numel(), math.ceil(targets / step) * step)
    if size >= SPARSE_TARGETS * flat.numel():
        return None
    padding = (~flat).nonzero()[:size - targets, 0]
    return torch.cat([flat.nonzero()[:, 0], padding]).sort().values


class Trainer:
    """Trains `model` (already parallelised) on `sampler` per `cfg`, writing under `out`."""

    def __init__(self, model: nn.Module, sampler: Any, cfg: TrainConfig, out: Path, topology: Topology, *,
                 model_config: dict, seq_len: int, flops_per_token: float, evaluator: Callable[[nn.Module], dict] | None = None,
                 log: Callable[[str], None] = print, run_name: str = "train", recipe_view: dict | None = None):
        self.model, self.sampler, self.cfg, self.out, self.topo = model, sampler, cfg, Path(out), topology
        self.model_config, self.seq_len, self.flops_per_token = model_config, seq_len, flops_per_token
        self.evaluator, self.say = evaluator, log
        self.device = topology.device
        self.languages: list[str] = list(sampler.languages)
        self.accumulation = accumulation_steps(cfg, seq_len, topology.world_size)
        self.batch_tokens = self.accumulation * cfg.micro_batch_size * seq_len * topology.world_size
        self.bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and self.device.type == "cuda")
        self.optimizers = build_optimizers(model, cfg)
        self.guard = SpikeGuard(cfg.spike_window, cfg.spike_sigma, cfg.spike_min_history, self.device)
        self.energy = RunEnergy(self.device, topology, cfg.cpu_watts_per_core, cfg.grid_g_per_kwh, cfg.codecarbon_country)
        self.peak, self.peak_source = peak_flops(self.device, cfg.peak_flops)
        self.checkpoints = self.out / "checkpoints"
        self.step = 0
        self.skipped = 0
        self.rollbacks = 0
        self.log_lines = 0
        self.resumed_from: int | None = None
        self.records: list[torch.Tensor] = []  # device-side rows of the steps not yet logged
        self.recent: deque[list[float]] = deque(maxlen=FINAL_WINDOW)
        self.last_eval: dict = {}
        self.stop_signal: str | None = None
        self.previous_wall: float | None = 0.0  # seconds the runs before this one (resumes) trained for
        self._started = time.perf_counter()
        self.log: RunLog | None = None
        self._bar = None
        self._interval_start = time.perf_counter()
        if topology.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        self.run_name, self.recipe_view = run_name, recipe_view or {}
        if self.accumulation * cfg.micro_batch_size * seq_len * topology.world_size != cfg.global_batch_tokens:
            self.say(f"[train] global batch: {self.batch_tokens} tokens ({self.accumulation} × {cfg.micro_batch_size} × "
                     f"{seq_len} × {topology.world_size} processes), the nearest to train.global_batch_tokens = {cfg.global_batch_tokens}")

    # -- state -----------------------------------------------------------------------------------

    def _state(self) -> dict:
        """Everything besides weights and moments that resume needs, from every rank."""
        rng = {"torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode()}
        if self.device.type == "cuda":
            rng["cuda"] = base64.b64encode(torch.cuda.get_rng_state(self.device).numpy().tobytes()).decode()
        per_rank = gather_objects({"sampler": self.sampler.state_dict(), "rng": rng}, self.topo)
        return {
            "step": self.step,
            "tokens": self.step * self.batch_tokens,
            "world_size": self.topo.world_size,
            "batch_tokens": self.batch_tokens,
            "optimizer_name": self.cfg.optimizer,
            "skipped": self.skipped,
            "rollbacks": self.rollbacks,
            "log_lines": self.log_lines,
            "guard": self.guard.state_dict(),
            "recent": list(self.recent),
            "last_eval": self.last_eval,
            "energy": self.energy.state_dict(),
            "wall_seconds": (self.previous_wall or 0.0) + time.perf_counter() - self._started,
            "ranks": per_rank,
            "recipe": self.recipe_view,
        }

    def _save(self) -> None:
        self._flush()
        model = get_model_state_dict(self.model, options=FULL)
        optimizer = get_optimizer_state_dict(self.model, self.optimizers, options=FULL)
        state = self._state()
        if self.topo.is_main:
            ckpt.save_checkpoint(self.checkpoints, self.step, model, optimizer, state, self.model_config,
                                 self.cfg.keep_last, self.cfg.milestone_every)
        self._barrier()

    def _load(self, folder: Path, restore_data: bool) -> None:
        model, optimizer, state = ckpt.load_checkpoint(folder)
        if state["batch_tokens"] != self.batch_tokens:
            raise FournilError(f"{folder} was written with {state['batch_tokens']} tokens a step ({state['world_size']} processes) "
                               f"but this run takes {self.batch_tokens}; resume with the same train.global_batch_tokens, "
                               f"and a micro_batch_size that divides it over {self.topo.world_size} processes")
        set_model_state_dict(self.model, model, options=StateDictOptions(full_state_dict=True))
        written_with = state.get("optimizer_name", "adamw")  # older checkpoints: AdamW, the only one then
        if written_with != self.cfg.optimizer:
            raise FournilError(f"{folder} was written with train.optimizer = {written_with}, whose state does not fit "
                               f"{self.cfg.optimizer}'s; resume with train.optimizer: {written_with}, or start afresh with --force")
        set_optimizer_state_dict(self.model, self.optimizers, optimizer, options=StateDictOptions(full_state_dict=True))
        self.guard.load_state_dict(state["guard"])
        self.step = state["step"]
        if restore_data:
            self._restore_stream(folder, state)
            self.skipped, self.rollbacks, self.log_lines = state["skipped"], state["rollbacks"], state["log_lines"]
            self.recent = deque(state["recent"], maxlen=FINAL_WINDOW)
            self.last_eval = state.get("last_eval", {})  # a finished run resumed with nothing left to train keeps its scores
            self.energy.load_state_dict(state["energy"], self.step)
            self.previous_wall = state.get("wall_seconds")  # None from a checkpoint of an older fournil

    def _restore_stream(self, folder: Path, state: dict) -> None:
        """Sampler and RNG. The sampler's position is global (every rank holds the same one), so a
        checkpoint resumes on any number of processes that keeps the tokens a step: each step reads
        the same sequences, split over the ranks differently."""
        ranks = state["ranks"]
        positions = [r["sampler"] for r in ranks]
        if any(p != positions[0] for p in positions):
            raise FournilError(f"{folder}: its ranks disagree on the sampler's position; resume from an earlier checkpoint")
        self.sampler.load_state_dict(positions[0])
        if len(ranks) != self.topo.world_size and self.topo.is_main:
            self.say(f"[train] {folder.name} was written by {len(ranks)} process{'es' * (len(ranks) > 1)}; going on with {self.topo.world_size} "
                     f"({self.batch_tokens} tokens a step, as before)")
        if self.topo.rank < len(ranks):  # a rank new to the run keeps its seeded generator
            rng = ranks[self.topo.rank]["rng"]
            torch.set_rng_state(_bytes_tensor(rng["torch"]))
            if self.device.type == "cuda" and "cuda" in rng:
                torch.cuda.set_rng_state(_bytes_tensor(rng["cuda"]), self.device)

    def _latest(self) -> Path | None:
        found = ckpt.latest_valid(self.checkpoints, self.say) if self.topo.is_main else None
        found = broadcast_object(str(found) if found else None, self.topo)
        return Path(found) if found else None

    def _barrier(self) -> None:
        if self.topo.distributed:
            torch.distributed.barrier()

    # -- the loop --------------------------------------------------------------------------------

    def _grad_sync(self, last: bool) -> contextlib.AbstractContextManager:
        """Reduce gradients across processes only on the last micro-batch of a step."""
        if not self.topo.distributed or last:
            if hasattr(self.model, "set_requires_gradient_sync"):  # FSDP2
                self.model.set_requires_gradient_sync(True)
            return contextlib.nullcontext()
        if hasattr(self.model, "set_requires_gradient_sync"):
            self.model.set_requires_gradient_sync(False)
            return contextlib.nullcontext()
        return self.model.no_sync()

    def _to_device(self, tensor: torch.Tensor | None) -> torch.Tensor | None:
        """Pinned and non-blocking: a plain .to("cuda") from pageable memory would wait for the device."""
        if tensor is None or self.device.type == "cpu":
            return tensor
        return tensor.pin_memory().to(self.device, non_blocking=True)

    def _micro_loss(self, x: torch.Tensor, y: torch.Tensor, doc: torch.Tensor | None, scale: torch.Tensor,
                    rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss to differentiate, per-token cross-entropy [B, T] for the records)."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            total, ce = self.model(x, targets=y, document_ids=doc, reduction="sum", z_loss=self.cfg.z_loss, target_rows=rows)
        return total * scale, ce

    def train_step(self) -> None:
        L = len(self.languages)
        batches = [self.sampler.next_batch() for _ in range(self.accumulation)]
        counts = torch.zeros(1 + L, dtype=torch.float32)
        target_rows = []  # per micro-batch, on the host: the positions with a target when few enough have one
        for batch in batches:
            valid = batch.targets != IGNORE
            counts[0] += valid.sum()
            counts[1:] += torch.bincount(batch.lang_ids[valid], minlength=L)[:L]
            target_rows.append(head_rows(valid))
        counts = all_reduce_sum(self._to_device(counts), self.topo)
        scale = self.topo.world_size / counts[0].clamp(min=1)
        sums = torch.zeros(1 + L, dtype=torch.float32, device=self.device)
        for i, batch in enumerate(batches):
            x, y = self._to_device(batch.input_ids), self._to_device(batch.targets)
            doc = self._to_device(batch.document_ids) if self.cfg.document_masking else None
            lang, rows = self._to_device(batch.lang_ids), self._to_device(target_rows[i])
            with self._grad_sync(i == len(batches) - 1):
                loss, ce = self._micro_loss(x, y, doc, scale, rows)
                loss.backward()
            ce = ce.detach().float()
            sums[0] += ce.sum()
            sums[1:].index_add_(0, lang.clamp(0, L - 1).flatten(), ce.flatten())
        sums = all_reduce_sum(sums, self.topo)
        loss = sums[0] / counts[0].clamp(min=1)
        params = [p for p in self.model.parameters() if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip or math.inf, foreach=True)
        if hasattr(norm, "full_tensor"):  # FSDP2: a DTensor
            norm = norm.full_tensor()
        skip = self.guard.check(loss, norm)
        lr = lr_at(self.step, self.cfg)
        for optimizer in self.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.found_inf = skip.float()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.records.append(torch.cat([torch.stack([loss, norm.float(), skip.float()]), sums[1:], counts[1:]]))

    def _flush(self) -> None:
        """Read the pending step records from the device (the one host sync) and log them."""
        if not self.records:
            return
        energy = self.energy.log_fields()  # cumulative across resumes, on the interval's last step
        rows = torch.stack(self.records).tolist()
        first = self.step - len(rows) + 1
        self.records = []
        now = time.perf_counter()
        elapsed = max(now - self._interval_start, 1e-9)
        tokens_per_second = len(rows) * self.batch_tokens / elapsed
        self._interval_start = now
        mfu = self._mfu(tokens_per_second)
        memory = torch.cuda.max_memory_allocated(self.device) / 2**30 if self.device.type == "cuda" else None
        L = len(self.languages)
        for offset, row in enumerate(rows):
            step = first + offset
            loss, norm, skip = row[0], row[1], bool(row[2])
            lang_sums, lang_counts = row[3:3 + L], row[3 + L:3 + 2 * L]
            self.skipped += skip
            if not skip:
                self.recent.append(row)
            record = {
                "step": step,
                "tokens": step * self.batch_tokens,
                "loss": loss,
                "loss_per_language": {lang: (s / n if n else None) for lang, s, n in zip(self.languages, lang_sums, lang_counts)},
                "tokens_per_language": {lang: int(n) for lang, n in zip(self.languages, lang_counts)},
                "lr": lr_at(step - 1, self.cfg),
                "grad_norm": norm,
                "skipped": skip,
                "tokens_per_second": round(tokens_per_second, 1),
                "mfu": mfu,
                "memory_gib": memory,
                **(energy if offset == len(rows) - 1 else dict.fromkeys(energy)),
            }
            self._write(record)
        if self.log is not None:
            self.log.flush()
        if self._bar is not None:
            self._bar.update(self._task, completed=self.step, rate=f"{tokens_per_second:,.0f} tok/s, loss {rows[-1][0]:.3f}")

    def _write(self, record: dict) -> None:
        self.log_lines += 1
        if self.log is not None:
            self.log.write(record)

    def _mfu(self, tokens_per_second: float) -> float | None:
        if not self.peak:
            return None
        return round(self.flops_per_token * tokens_per_second / (self.peak * self.topo.world_size), 4)

    def _rollback_due(self) -> bool:
        streak = int(self.guard.max_streak)  # read after a flush, when the device is in step anyway
        self.guard.max_streak.zero_()
        return streak >= self.cfg.rollback_after

    def _rollback(self) -> None:
        """Back to the last checkpoint, keeping the sampler where it is: the data that spiked is skipped."""
        folder = self._latest()
        if folder is None:
            self.say(f"[train] warning: {self.cfg.rollback_after} steps in a row skipped at step {self.step} but no checkpoint to roll back to")
            return
        if self.rollbacks >= self.cfg.max_rollbacks:
            raise FournilError(f"training diverged: still spiking at step {self.step} after {self.rollbacks} rollbacks; "
                               f"lower train.lr, raise train.warmup_steps, or set train.z_loss (e.g. 1e-4)")
        from_step = self.step
        self._load(folder, restore_data=False)
        self.rollbacks += 1
        self._write({"step": self.step, "tokens": self.step * self.batch_tokens, "event": "rollback", "from_step": from_step,
                     "to_step": self.step, "skipped_data_steps": from_step - self.step})
        self.say(f"[train] rollback {self.rollbacks}: repeated spikes at step {from_step}; back to step {self.step}, "
                 f"skipping the data of steps {self.step + 1}–{from_step}")

    def _evaluate(self) -> None:
        if self.evaluator is None:
            return
        # eager: held-out batches have other shapes, and recompiling for each would cost more than it saves
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16), torch.compiler.set_stance("force_eager"):
            scores = self.evaluator(self.model)
        self.model.train()
        self.last_eval = scores
        self._write({"step": self.step, "tokens": self.step * self.batch_tokens, "eval": {"bits_per_byte": scores}})
        if self.log is not None:
            self.log.flush()

    def _on_signal(self, signum: int, frame: Any) -> None:  # noqa: ARG002
        self.stop_signal = signal.Signals(signum).name

    def _stop_requested(self) -> bool:
        flag = torch.tensor([1.0 if self.stop_signal else 0.0], device=self.device)
        return bool(all_reduce_sum(flag, self.topo).item())

    def train(self) -> dict:
        """Run to `max_steps` (resuming from the latest valid checkpoint) and return the figures."""
        self._barrier()  # rank 0 has cleared or kept the folder before anyone looks in it
        self._started = time.perf_counter()
        self.energy.start()
        handlers = {}
        try:
            self._resume_or_start()
            if self.topo.is_main:
                self.log = RunLog(self.out / "log.jsonl", self.cfg.tensorboard, self.cfg.wandb_project, self.run_name, self.recipe_view)
            if threading.current_thread() is threading.main_thread():
                handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
            progress = contextlib.nullcontext()
            if self.topo.is_main:
                from fournil.progress import bar

                progress = self._bar = bar()
            t0 = time.perf_counter()
            with progress:
                if self._bar is not None:
                    self._task = self._bar.add_task("train", total=self.cfg.max_steps, completed=self.step, rate="")
                self._loop()
        except torch.OutOfMemoryError:
            raise FournilError(self._out_of_memory()) from None
        finally:
            for s, handler in handlers.items():
                signal.signal(s, handler)
            if self.log is not None:
                self.log.close()
            self.energy.stop()  # codecarbon's threads too, whatever stopped the run
        return self._figures(time.perf_counter() - t0)

    def _resume_or_start(self) -> None:
        """Load the latest valid checkpoint, or start from step 0 with the log cut back to nothing."""
        folder = self._latest()
        if folder is not None:
            self._load(folder, restore_data=True)
            self.resumed_from = self.step
            if self.step > self.cfg.max_steps:
                raise FournilError(f"{folder} is at step {self.step}, past train.max_steps = {self.cfg.max_steps}; "
                                   f"raise train.max_steps, or start afresh with --force")
            if self.topo.is_main:
                truncate_lines(self.out / "log.jsonl", self.log_lines)
            self.say(f"[train] resuming from {folder} (step {self.step})")
        elif broadcast_object(self.topo.is_main and bool(ckpt.step_dirs(self.checkpoints)), self.topo):
            raise FournilError(f"every checkpoint in {self.checkpoints} is corrupt (see the warnings above); move the folder "
                               f"away to keep it, or run with --force to start afresh")
        elif self.topo.is_main:  # a run stopped before its first checkpoint logs its steps once
            truncate_lines(self.out / "log.jsonl", 0)

    def _out_of_memory(self) -> str:
        """The way out of an out-of-memory error: a smaller micro-batch is an adjustable setting, so the run resumes."""
        where = device_name(self.device)
        if self.device.type == "cuda":
            total = torch.cuda.get_device_properties(self.device).total_memory
            where += f", {torch.cuda.max_memory_allocated(self.device) / 2**30:.1f} of {total / 2**30:.0f} GiB at the peak"
        resume = "; then run the same command again: it resumes from the last checkpoint" if any(self.checkpoints.glob("step_*")) else ""
        return (f"out of memory in step {self.step + 1} ({where}) with {self.cfg.micro_batch_size} sequences of {self.seq_len} "
                f"tokens a micro-batch: lower train.micro_batch_size (gradient accumulation keeps the global batch) or set "
                f"train.activation_checkpointing: ops (or selective, full){resume}")

    def _loop(self) -> None:
        cfg = self.cfg
        self._interval_start = time.perf_counter()
        while self.step < cfg.max_steps:
            self.train_step()
            done = self.step == cfg.max_steps
            checkpoint_due = self.step % cfg.checkpoint_every == 0 or done
            eval_due = bool(cfg.eval_every) and self.step % cfg.eval_every == 0
            if not (self.step % cfg.log_every == 0 or checkpoint_due or eval_due or done or self.stop_signal):
                continue
            self._flush()
            if self._rollback_due():
                self._rollback()
                continue
            if eval_due or done:
                self._evaluate()
            stop = self._stop_requested()
            if checkpoint_due or stop:
                self._save()
            if stop:
                raise Interrupted(f"{self.stop_signal or 'signal'}: checkpoint written at step {self.step}")

    def _figures(self, wall: float) -> dict:
        L = len(self.languages)
        recent = list(self.recent)
        total_sum = sum(r[0] * sum(r[3 + L:3 + 2 * L]) for r in recent)
        total_count = sum(sum(r[3 + L:3 + 2 * L]) for r in recent)
        per_language = {}
        for i, lang in enumerate(self.languages):
            s, n = sum(r[3 + i] for r in recent), sum(r[3 + L + i] for r in recent)
            per_language[lang] = {"final_loss": round(s / n, 5) if n else None}
            if lang in self.last_eval:
                per_language[lang]["bits_per_byte"] = self.last_eval[lang]
        # across resumes, so a resume with nothing left to train keeps the figure; unknown before an older checkpoint
        total_wall = None if self.previous_wall is None else self.previous_wall + wall
        tokens_per_second = self.step * self.batch_tokens / total_wall if total_wall else None
        return {
            "steps": self.step,
            "tokens": self.step * self.batch_tokens,
            "wall_seconds": round(total_wall, 3) if total_wall is not None else None,
            "wall_seconds_this_run": round(wall, 3),
            "device": _device_figures(self.device, self.topo),
            "precision": "bf16 autocast, float32 weights" if self.bf16 else "float32",
            "global_batch_tokens": self.batch_tokens,
            "gradient_accumulation": self.accumulation,
            "final_loss": round(total_sum / total_count, 5) if total_count else None,
            "final_loss_window_steps": len(recent),
            "per_language": per_language,
            "tokens_per_second": round(tokens_per_second, 1) if tokens_per_second else None,
            "mfu": self._mfu(tokens_per_second) if tokens_per_second else None,
            "mfu_formula": "flops_per_token (6N + 12·L·H·Q·T) × tokens/s ÷ (peak × processes)",
            "peak_flops": self.peak,
            "peak_flops_source": self.peak_source,
            "energy": self.energy.figures(),
            "skipped_steps": self.skipped,
            "rollbacks": self.rollbacks,
            "resumed_from_step": self.resumed_from,
        }

    def final_state_dict(self) -> dict[str, torch.Tensor]:
        """The full model weights on the CPU (gathered from every rank under FSDP2)."""
        return get_model_state_dict(self.model, options=FULL)


def _bytes_tensor(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)


def _device_figures(device: torch.device, topology: Topology) -> dict:
    return {"name": device_name(device), "type": device.type, "processes": topology.world_size}


__all__ = ["Interrupted", "Trainer", "accumulation_steps", "build_optimizers", "unwrap"]
