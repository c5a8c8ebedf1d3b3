"""Two gloo processes under torchrun, DDP and FSDP2 (eager and compiled), train like one process with
the same global batch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from train_helpers import config, make_trainer

HELPER = Path(__file__).with_name("train_helpers.py")
STEPS = 12


def losses(out: Path) -> list[float]:
    """Loss and gradient norm of every step, one flat list."""
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return [value for r in lines for value in (r["loss"], r["grad_norm"])]


def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = make_trainer(tmp_path / "single", config(max_steps=STEPS, log_every=1))
        figures = single.train()
    finally:
        torch.set_num_threads(threads)
    assert figures["gradient_accumulation"] == 2
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             str(HELPER), str(tmp_path / "multi"), str(STEPS), "--parallelism", "ddp,fsdp,fsdp-compiled"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = losses(tmp_path / "single")
    for mode in ("ddp", "fsdp", "fsdp-compiled"):
        got = losses(tmp_path / "multi" / mode)
        assert len(got) == 2 * STEPS
        assert got == pytest.approx(expected, rel=1e-5), mode
        state = json.loads((tmp_path / "multi" / mode / "checkpoints" / "step_10" / "state.json").read_text())
        assert state["world_size"] == 2 and [r["sampler"]["sequence"] for r in state["ranks"]] == [80, 80]
