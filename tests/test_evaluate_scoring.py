"""Scoring: every token scored once, known answers on a bigram model, batch and window invariance."""

from __future__ import annotations

import math

import pytest
import torch
from evaluate_helpers import Bigram, CharTokenizer, hand_nll
from hypothesis import given
from hypothesis import strategies as st

from fournil.model.scoring import (IGNORE, bits_per_byte, continuation_logprobs, encode_continuation, greedy_generate,
                                   sequence_nll, windows)


@given(st.integers(1, 200), st.integers(1, 64), st.data())
def test_windows_score_every_position_once_within_the_context(length, context, data):
    stride = data.draw(st.integers(1, context))
    scored, previous = [], 0
    for begin, end in windows(length, context, stride):
        assert end - begin <= context
        scored += list(range(previous + 1, end + 1))
        assert begin <= previous or previous == 0
        previous = end
    assert scored == list(range(1, length))


def test_bits_per_byte_equals_the_hand_computed_value_for_any_stride_and_batch():
    torch.manual_seed(0)
    table = torch.randn(128, 128)
    model, tok = Bigram(table), CharTokenizer(128)
    texts = ["hello world, a text longer than the context", "ab", "été"]  # é is 2 UTF-8 bytes, 1 token here
    nll = sum(hand_nll(table, [1] + [ord(c) % 128 for c in t]) for t in texts)
    n_bytes = 43 + 2 + 5
    for stride, batch in ((1, 1), (3, 2), (8, 8), (None, 3)):
        result = bits_per_byte(model, tok, texts, context_length=8, batch_size=batch, bos_id=1, stride=stride)
        assert result["bytes"] == n_bytes and result["tokens"] == 43 + 2 + 3
        assert result["nll_nats"] == pytest.approx(nll, rel=1e-5)
        assert result["bits_per_byte"] == pytest.approx(nll / math.log(2) / n_bytes, rel=1e-5)
        assert result["byte_perplexity"] == pytest.approx(2 ** result["bits_per_byte"])


def test_without_bos_the_first_token_is_context_only():
    table = torch.randn(16, 16)
    (nll, count), = sequence_nll(Bigram(table), [[3, 4, 5]], context_length=4)
    assert count == 2 and nll == pytest.approx(hand_nll(table, [3, 4, 5]), rel=1e-5)


def test_a_real_model_scores_the_same_in_any_batch_and_with_full_context_windows():
    from fournil.model.llama import Llama
    from fournil.model.presets import PRESETS

    torch.manual_seed(0)
    model = Llama(PRESETS["tiny"]).eval()
    seqs = [[1, *torch.randint(16, 512, (n,)).tolist()] for n in (5, 40, 17)]
    one = sequence_nll(model, seqs, context_length=64, batch_size=1)
    many = sequence_nll(model, seqs, context_length=64, batch_size=3)
    assert [c for _, c in one] == [5, 40, 17]
    assert [n for n, _ in one] == pytest.approx([n for n, _ in many], rel=1e-4)
    # stride only matters once a sequence outgrows the window: here the 40-token one does
    short = sequence_nll(model, seqs, context_length=16, batch_size=2, stride=4)
    assert short[0][0] == pytest.approx(one[0][0], rel=1e-4) and short[1][0] != pytest.approx(one[1][0], rel=1e-4)


def test_continuation_logprobs_and_greedy_flag_match_the_table():
    table = torch.full((8, 8), -5.0)
    table[1, 2] = 3.0  # after 1, 2 is the most likely
    table[2, 3] = 3.0
    table[2, 4] = 1.0
    model = Bigram(table)
    logprobs = torch.log_softmax(table.double(), dim=-1)
    results = continuation_logprobs(model, [([1], [2, 3]), ([0, 1], [2, 4]), ([5] * 20, [1])], context_length=4)
    assert results[0] == (pytest.approx((logprobs[1, 2] + logprobs[2, 3]).item(), rel=1e-5), True)
    assert results[1] == (pytest.approx((logprobs[1, 2] + logprobs[2, 4]).item(), rel=1e-5), False)
    assert results[2][0] == pytest.approx(logprobs[5, 1].item(), rel=1e-5)  # context cut from the left


def test_encode_continuation_moves_trailing_spaces_to_the_continuation():
    tok = CharTokenizer(128)
    context, continuation = encode_continuation(tok, "Answer: ", "yes", bos_id=1)
    assert context == [1] + [ord(c) for c in "Answer:"]
    assert continuation == [ord(c) for c in " yes"]


def test_greedy_generation_follows_the_argmax_and_stops():
    table = torch.zeros(8, 8)
    for a in range(8):
        table[a, (a + 1) % 8] = 5.0
    model = Bigram(table, context_length=16)
    assert greedy_generate(model, [[0], [5, 6]], 4, 16) == [[1, 2, 3, 4], [7, 0, 1, 2]]
    assert greedy_generate(model, [[0]], 6, 16, stop_ids=[3]) == [[1, 2]]
    assert greedy_generate(model, [[0]], 6, 16, stop=lambda ids: len(ids) == 2) == [[1, 2]]


def test_a_llama_scores_only_target_rows_equal_to_full_logits_cross_entropy(monkeypatch):
    import fournil.model.llama as llama
    from fournil.model.presets import PRESETS

    torch.manual_seed(0)
    model = llama.Llama(PRESETS["tiny"]).eval()
    inputs = torch.randint(0, 512, (3, 20))
    targets = torch.randint(0, 512, (3, 20))
    targets[:, :8] = IGNORE
    targets[2, 15:] = IGNORE
    monkeypatch.setattr(llama, "SCORE_CHUNK_LOGITS", 512 * 5)  # 5 rows a chunk: 25 scored rows span 5 chunks
    with torch.inference_mode():
        scored = model(inputs, targets=targets)
        logits = model(inputs)
    full = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE, reduction="none")
    assert torch.allclose(scored, full.view(targets.shape), atol=1e-5)
    assert (scored[targets == IGNORE] == 0).all() and (scored[targets != IGNORE] > 0).all()
    # the training kernel agrees to rounding (bitwise only where both run matmuls of the same shape)
    assert torch.allclose(scored, model(inputs, targets=targets).detach(), rtol=1e-6, atol=0)


def test_a_release_folder_is_evaluated_without_transformers(tmp_path, monkeypatch):
    """`generate` reads a release folder without transformers; evaluate does too (it refused), with the same scores."""
    import dataclasses
    import sys

    import torch
    from evaluate_helpers import make_tokenizer

    from fournil.evaluate.models import open_model
    from fournil.model.hf import export_hf
    from fournil.model.llama import Llama
    from fournil.model.presets import PRESETS

    texts = ["Le chat dort sur le tapis.", "The cat sleeps on the mat."] * 20
    make_tokenizer(tmp_path / "tokenizer", texts, vocab_size=300)
    torch.manual_seed(0)
    export_hf(Llama(dataclasses.replace(PRESETS["tiny"], vocab_size=300)), tmp_path / "tokenizer", tmp_path / "release")
    ids = torch.tensor([[1, 5, 9, 20, 33, 7]])
    with_hf = open_model(tmp_path / "release")
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if not installed
    without = open_model(tmp_path / "release")
    assert (with_hf.kind, without.kind) == ("transformers", "fournil")
    with torch.no_grad():
        torch.testing.assert_close(without.model(ids), with_hf.model(ids), rtol=1e-4, atol=1e-4)
