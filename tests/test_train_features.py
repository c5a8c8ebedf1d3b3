"""Trainer options on a tiny model: activation checkpointing, z-loss and document masking."""

from __future__ import annotations

import collections
import copy
import dataclasses

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from fournil.mixture.sampler import Batch
from fournil.train.distributed import checkpoint_blocks
from train_helpers import SEQ_LEN, ToySampler, config, make_trainer, tiny_model


pytestmark = pytest.mark.usefixtures("one_thread")  # bitwise comparisons want one thread


def batch() -> Batch:
    return ToySampler(4).next_batch()


class OpCounter(TorchDispatchMode):
    """Counts the aten ops run under it, by name."""

    def __init__(self):
        super().__init__()
        self.ops = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        self.ops[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def backward_ops(model: torch.nn.Module, b: Batch) -> tuple[torch.Tensor, collections.Counter]:
    """The loss, and the ops its backward ran (the recomputed forward ops among them)."""
    loss = model(b.input_ids, targets=b.targets).sum()
    with OpCounter() as counter:
        loss.backward()
    return loss.detach(), counter.ops


@pytest.mark.parametrize("mode", ["ops", "selective", "full"])
def test_activation_checkpointing_gives_the_same_loss_and_gradients_and_recomputes_what_it_says(mode):
    b = batch()
    reference = tiny_model().train()
    wrapped = copy.deepcopy(reference)
    checkpoint_blocks(wrapped, mode)
    wrapped_blocks = [i for i, block in enumerate(wrapped.layers) if "Checkpoint" in type(block).__name__]
    assert wrapped_blocks == ([0] if mode == "selective" else [0, 1])  # selective: every other block
    loss, plain = backward_ops(reference, b)
    wrapped_loss, recomputing = backward_ops(wrapped, b)
    torch.testing.assert_close(wrapped_loss, loss, rtol=0, atol=0)
    for p, q in zip(reference.parameters(), wrapped.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-6, atol=1e-7)
    # a block's forward has 7 matmuls (q, k, v, o, gate, up, down); recomputing a block redoes 6 (the
    # down projection's output is not needed by backward, and checkpoint stops early); "ops" redoes none
    extra_matmuls = recomputing["mm"] - plain["mm"]
    assert extra_matmuls == {"ops": 0, "selective": 6, "full": 12}[mode]
    assert recomputing["rsqrt"] > plain["rsqrt"]  # every mode redoes the RMSNorms of the blocks it wraps
    assert recomputing["silu"] > plain["silu"]


def test_z_loss_adds_the_weighted_log_sum_exp_squared(tmp_path):
    b = batch()
    weight = 1e-3
    with_z = make_trainer(tmp_path / "z", config(z_loss=weight))
    without = make_trainer(tmp_path / "plain", config())
    scale = torch.tensor(0.5)
    loss_z, ce_z = with_z._micro_loss(b.input_ids, b.targets, None, scale)
    loss, ce = without._micro_loss(b.input_ids, b.targets, None, scale)
    with torch.no_grad():
        logits = tiny_model()(b.input_ids).double()
    valid = b.targets != -100
    z = (torch.logsumexp(logits, dim=-1)[valid] ** 2).sum()
    assert z > 0
    torch.testing.assert_close(ce_z, ce)  # the logged cross-entropy is the plain one
    torch.testing.assert_close((loss_z - loss).double(), weight * z * 0.5, rtol=1e-4, atol=0)


class DocumentSampler(ToySampler):
    """The toy stream with a document boundary in each row at a row-dependent position."""

    def next_batch(self) -> Batch:
        b = super().next_batch()
        starts = torch.tensor([9, 17, 5, 24])[: b.input_ids.shape[0]]
        ids = (torch.arange(SEQ_LEN)[None, :] >= starts[:, None]).long()
        return dataclasses.replace(b, document_ids=ids)


@pytest.mark.parametrize("masking", [True, False])
def test_document_ids_reach_the_model_only_with_document_masking(tmp_path, masking):
    trainer = make_trainer(tmp_path, config(max_steps=2, document_masking=masking))
    trainer.sampler = DocumentSampler(4)
    seen = []
    forward = trainer.model.forward

    def spy(input_ids, targets=None, document_ids=None, **loss):  # noqa: ANN001, ANN202
        seen.append(document_ids)
        return forward(input_ids, targets=targets, document_ids=document_ids, **loss)

    trainer.model.forward = spy
    trainer.train_step()
    assert len(seen) == trainer.accumulation
    if masking:
        assert all(torch.equal(d, DocumentSampler(4).next_batch().document_ids) for d in seen)
    else:
        assert all(d is None for d in seen)


def test_document_masking_changes_the_loss_only_after_a_boundary(tmp_path):
    b = DocumentSampler(4).next_batch()
    trainer = make_trainer(tmp_path, config(document_masking=True))
    with torch.no_grad():
        _, masked = trainer._micro_loss(b.input_ids, b.targets, b.document_ids, torch.tensor(1.0))
        _, packed = trainer._micro_loss(b.input_ids, b.targets, None, torch.tensor(1.0))
    first_document = b.document_ids == 0
    torch.testing.assert_close(masked[first_document], packed[first_document], rtol=1e-5, atol=1e-6)
    differs = (masked - packed).abs() > 1e-5
    assert differs[~first_document].float().mean() > 0.9  # the second document no longer sees the first


class AnswerSampler(ToySampler):
    """The toy stream with targets on the second half of each row only, as SFT's answer-only loss leaves them."""

    def next_batch(self) -> Batch:
        b = super().next_batch()
        targets = b.targets.clone()
        targets[:, : SEQ_LEN // 2] = -100
        return dataclasses.replace(b, targets=targets)


@pytest.mark.parametrize("sparse", [True, False])
def test_only_positions_with_a_target_reach_the_head_when_few_have_one(tmp_path, sparse):
    """SFT's targets (half the positions here) send only their rows through the head, computed on the host;
    pretraining's dense targets send all. The step is the same either way (loss and weights)."""
    runs = {}
    for rows_on in (True, False):
        trainer = make_trainer(tmp_path / str(rows_on), config(max_steps=1))
        trainer.sampler = AnswerSampler(4) if sparse else ToySampler(4)
        seen, forward = [], trainer.model.forward

        def spy(input_ids, targets=None, target_rows=None, **rest):  # noqa: ANN001, ANN202
            seen.append(target_rows)
            return forward(input_ids, targets=targets, target_rows=target_rows if rows_on else None, **rest)

        trainer.model.forward = spy
        trainer.train_step()
        runs[rows_on] = (torch.stack(trainer.records)[:, 0], [p.detach().clone() for p in trainer.model.parameters()])
        expected = (trainer.sampler.__class__(4).next_batch().targets.flatten() != -100).nonzero()[:, 0]
        assert len(seen) == trainer.accumulation
        assert all(torch.equal(r, expected) for r in seen) if sparse else all(r is None for r in seen)
    torch.testing.assert_close(runs[True][0], runs[False][0], rtol=1e-6, atol=1e-6)
    for a, b in zip(runs[True][1], runs[False][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_head_rows_are_padded_to_a_quarter_of_the_positions_with_target_less_ones():
    """A compiled head sees a few row counts in a run, not one per step: the padding rows carry no
    target, so the loss and the gradients are those of the targets alone."""
    from fournil.train.trainer import head_rows

    valid = torch.zeros(4, 16, dtype=torch.bool)
    valid[:, 10:] = True  # 24 of 64 positions: a third, as SFT's answers
    rows = head_rows(valid)
    assert rows.numel() == 32 and torch.equal(rows, rows.sort().values) and rows.unique().numel() == 32
    assert set(valid.flatten().nonzero()[:, 0].tolist()) <= set(rows.tolist())
    assert int(valid.flatten()[rows].sum()) == 24  # the 8 others are target-less
    for share, expected in ((0, 0), (1, 16), (16, 16), (17, 32), (48, 48), (49, None), (64, None)):
        some = torch.zeros(64, dtype=torch.bool)
        some[torch.randperm(64, generator=torch.Generator().manual_seed(share))[:share]] = True
        got = head_rows(some)
        assert (got is None) if expected is None else got.numel() == expected, (share, got)
    from fournil.model.llama import OutputHead

    torch.manual_seed(0)
    head, h = OutputHead(8, 32, bias=False), torch.randn(4, 16, 8)
    targets = torch.where(valid, torch.randint(0, 32, (4, 16)), -100)
    padded, _ = head(h, targets, reduction="sum", target_rows=rows)
    exact, _ = head(h, targets, reduction="sum", target_rows=valid.flatten().nonzero()[:, 0])
    torch.testing.assert_close(padded, exact)
