"""Two gloo processes under torchrun, DDP and FSDP2 (eager and compiled), train like one process with
the same global batch, and a checkpoint resumes on either number of processes; two "nodes" too."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fournil.errors import FournilError
from train_helpers import config, make_trainer

HELPER = Path(__file__).with_name("train_helpers.py")
STEPS = 12


def losses(out: Path) -> list[float]:
    """Loss and gradient norm of every step, one flat list."""
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return [value for r in lines for value in (r["loss"], r["grad_norm"])]


def resumable_copy(src: Path, dst: Path) -> Path:
    """`src`'s run folder without its last checkpoint: a run stopped after step 10, to be resumed."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(f"step_{STEPS}"))
    return dst


def test_two_processes_match_one_with_the_same_global_batch_and_resume_across_process_counts(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = make_trainer(tmp_path / "single", config(max_steps=STEPS, log_every=1))
        figures = single.train()
    finally:
        torch.set_num_threads(threads)
    assert figures["gradient_accumulation"] == 2
    # ddp resumes the single process's step-10 checkpoint on 2 processes; the others start afresh
    resumable_copy(tmp_path / "single", tmp_path / "multi" / "ddp")
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             str(HELPER), str(tmp_path / "multi"), str(STEPS), "--parallelism", "ddp,fsdp,fsdp-compiled",
                             "--codecarbon-country", "FRA"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "step_10 was written by 1 process; going on with 2 (256 tokens a step, as before)" in result.stderr
    expected = losses(tmp_path / "single")
    for mode in ("ddp", "fsdp", "fsdp-compiled"):
        got = losses(tmp_path / "multi" / mode)
        assert len(got) == 2 * STEPS
        assert got == pytest.approx(expected, rel=1e-5), mode
        state = json.loads((tmp_path / "multi" / mode / "checkpoints" / f"step_{STEPS}" / "state.json").read_text())
        assert state["world_size"] == 2 and [r["sampler"]["sequence"] for r in state["ranks"]] == [96, 96]
        codecarbon = state["energy"]["codecarbon"]  # both ranks' trackers, summed
        assert codecarbon["kwh"] > 0 and codecarbon["from_step"] == (10 if mode == "ddp" else 0)  # ddp resumed without one
    # and the 2-process FSDP2 checkpoint of step 10 resumes in one process
    back = resumable_copy(tmp_path / "multi" / "fsdp", tmp_path / "back")
    said = []
    torch.set_num_threads(1)
    try:
        trainer = make_trainer(back, config(max_steps=STEPS, log_every=1))
        trainer.say = said.append
        trainer.train()
    finally:
        torch.set_num_threads(threads)
    assert trainer.resumed_from == 10 and "[train] step_10 was written by 2 processes; going on with 1 (256 tokens a step, as before)" in said
    assert losses(back) == pytest.approx(expected, rel=1e-5)


def test_adamw_under_ddp_and_fsdp2_trains_like_one_process(tmp_path):
    """The test above runs the default, Muon (whose step on FSDP2 gathers each sharded matrix for
    Newton–Schulz and keeps its shard); AdamW, the reference recipes' optimiser, holds as well."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        make_trainer(tmp_path / "single", config(max_steps=STEPS, log_every=1, optimizer="adamw")).train()
    finally:
        torch.set_num_threads(threads)
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             str(HELPER), str(tmp_path / "multi"), str(STEPS), "--parallelism", "ddp,fsdp",
                             "--optimizer", "adamw"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = losses(tmp_path / "single")
    for mode in ("ddp", "fsdp"):
        assert losses(tmp_path / "multi" / mode) == pytest.approx(expected, rel=1e-5), mode


def test_a_checkpoint_resumes_only_with_the_same_tokens_a_step(tmp_path):
    make_trainer(tmp_path, config(max_steps=10)).train()
    with pytest.raises(FournilError, match="written with 256 tokens a step .* but this run takes 512"):
        make_trainer(tmp_path, config(max_steps=20, micro_batch_size=4, global_batch_tokens=4 * 32 * 4)).train()


def test_two_nodes_of_one_process_each_train_like_one_process(tmp_path):
    """Multi-node semantics on one machine: two torchrun agents (node ranks 0 and 1, LOCAL_RANK 0 on
    both) meet at a static rendezvous; global rank 0 alone writes, the losses equal one process's."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
              "--master_addr", "127.0.0.1", "--master_port", str(port)]
    nodes = [subprocess.Popen([*launch, "--node_rank", str(n), str(HELPER), str(tmp_path / "nodes"), "4"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in (0, 1)]
    results = [node.communicate(timeout=300) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], results[0][1][-2000:] + results[1][1][-2000:]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        make_trainer(tmp_path / "single", config(max_steps=4, log_every=1)).train()
    finally:
        torch.set_num_threads(threads)
    assert losses(tmp_path / "nodes") == pytest.approx(losses(tmp_path / "single"), rel=1e-5)  # each step logged once
    state = json.loads((tmp_path / "nodes" / "checkpoints" / "step_4" / "state.json").read_text())
    assert state["world_size"] == 2 and len(state["ranks"]) == 2
