"""The accelerator paths on every device present: the CPU always, CUDA when there is one.

bf16 autocast, torch.compile, the fused loss, fused AdamW skipping a poisoned step, resume,
scoring and generation. CI runs the CPU half; `benchmarks/gpu.sh` runs the CUDA half on a lent GPU
(`pytest tests/test_device.py -k cuda`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch._dynamo.utils import counters

from fournil.model.generate import Sampling, generate_tokens
from fournil.model.llama import Llama
from fournil.model.presets import PRESETS
from fournil.model.scoring import sequence_nll
from fournil.train.distributed import Topology, checkpoint_blocks, compile_model
from fournil.train.energy import EnergyMeter
from fournil.train.trainer import Interrupted
from train_helpers import MODEL, config, make_trainer, poisoned_model, tiny_model

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=CUDA)])
def device(request) -> torch.device:
    return torch.device(request.param)


def trainer_on(device: torch.device, out: Path, model: Llama | None = None, poison: range = range(0), **fields):
    model = (model or tiny_model()).to(device)
    return make_trainer(out, config(device=device.type, **fields), Topology(0, 1, 0, device), model=model, poison=poison)


def losses(out: Path) -> dict[int, float]:
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in lines if "loss" in r}


def test_fused_loss_under_bf16_autocast_matches_the_logits_loss(device):
    torch.manual_seed(0)
    model = Llama(PRESETS["tiny"]).to(device)
    x = torch.randint(0, 512, (4, 64), device=device)
    y = torch.randint(0, 512, (4, 64), device=device)
    y[0, :10] = -100
    with torch.autocast(device.type, dtype=torch.bfloat16):
        logits = model(x).float()
        reference = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum")
    reference.backward()
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    with torch.autocast(device.type, dtype=torch.bfloat16):
        total, per_token = model(x, y, reduction="sum")
    total.backward()
    assert per_token.dtype == torch.float32 and (per_token[0, :10] == 0).all()
    torch.testing.assert_close(total, reference.detach(), rtol=1e-3, atol=0)
    for e, p in zip(expected, model.parameters(), strict=True):  # both from bf16 matmuls: equal to bf16 rounding
        assert (p.grad - e).norm() <= 2e-2 * e.norm()


def test_compiled_bf16_training_tracks_float32_and_skips_a_poisoned_step(device, tmp_path):
    """One compiled run (the trainer's CUDA default) with op-level activation checkpointing, bf16
    autocast: it follows the float32 eager run of the same data, and fused AdamW skips the step whose
    loss is NaN without a host sync."""
    poison = range(40, 41)  # sequence 40 lies in step 6
    reference = trainer_on(device, tmp_path / "eager", poisoned_model(tiny_model(), math.nan), poison=poison,
                           max_steps=12, precision="fp32")
    model = poisoned_model(tiny_model(), math.nan).to(device)
    checkpoint_blocks(model, "ops")
    compile_model(model)
    counters.clear()
    compiled = trainer_on(device, tmp_path / "compiled", model, poison=poison, max_steps=12, precision="bf16")
    assert compiled.bf16
    figures, expected = compiled.train(), reference.train()
    assert figures["precision"].startswith("bf16") and figures["skipped_steps"] == expected["skipped_steps"] == 1
    ours, theirs = losses(tmp_path / "compiled"), losses(tmp_path / "eager")
    assert math.isnan(ours[6]) and math.isnan(theirs[6])
    for step in set(ours) - {6}:
        assert ours[step] == pytest.approx(theirs[step], rel=3e-2)  # bf16 rounding, not another function
    assert ours[12] < 0.8 * ours[1]
    assert counters["stats"]["unique_graphs"] == 3  # one for both blocks, the norm, the head


def test_a_preempted_run_resumes_on_the_device_with_the_same_losses(device, tmp_path, one_thread):
    trainer_on(device, tmp_path / "straight", max_steps=20, checkpoint_every=50).train()
    preempted = trainer_on(device, tmp_path / "resumed", max_steps=20, checkpoint_every=50)
    step = preempted.train_step

    def step_then_signal() -> None:  # SIGTERM arrives during step 10
        step()
        preempted.stop_signal = "SIGTERM" if preempted.step == 10 else None

    preempted.train_step = step_then_signal
    with pytest.raises(Interrupted):
        preempted.train()
    figures = trainer_on(device, tmp_path / "resumed", max_steps=20, checkpoint_every=50).train()
    assert figures["resumed_from_step"] == 10
    straight, resumed = losses(tmp_path / "straight"), losses(tmp_path / "resumed")
    assert list(resumed) == list(range(1, 21))
    if device.type == "cpu":
        assert resumed == straight  # bitwise
    else:  # CUDA's atomic adds (embedding backward) round in any order
        assert all(resumed[s] == pytest.approx(straight[s], rel=1e-3) for s in straight)


def test_scoring_on_the_device_matches_float32_on_the_cpu(device):
    torch.manual_seed(0)
    model = Llama(MODEL).eval()
    sequences = [torch.randint(0, 128, (n,)).tolist() for n in (5, 31, 70)]
    cpu = sequence_nll(model, sequences, context_length=MODEL.context_length)
    here = sequence_nll(model.to(device), sequences, context_length=MODEL.context_length)  # bf16 autocast on CUDA
    for (a, n), (b, m) in zip(cpu, here, strict=True):
        assert n == m and b == pytest.approx(a, rel=1e-2)


def test_greedy_generation_on_the_device_picks_the_cpu_tokens(device):
    torch.manual_seed(0)
    model = Llama(PRESETS["tiny"]).eval()
    prompt = [5, 17, 200, 3]
    cpu = list(generate_tokens(model, prompt, Sampling(max_new_tokens=20)))
    here = list(generate_tokens(model.to(device), prompt, Sampling(max_new_tokens=20)))
    assert here == cpu and len(cpu) == 20


@CUDA
def test_cuda_energy_comes_from_the_gpu_counter():
    pytest.importorskip("pynvml")
    meter = EnergyMeter(torch.device("cuda"), cpu_watts_per_core=10.0)
    assert meter.method.startswith("NVML")
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(200):
        a @ a
    torch.cuda.synchronize()
    assert meter.run_kwh() > 0
