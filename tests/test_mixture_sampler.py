"""The sampler: shares, curriculum switch, exact resume, ranks without overlap, canaries, masking, bad shards."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from mixture_helpers import build_run, recipe, run_mixture

from fournil.errors import FournilError
from fournil.mixture.sampler import MixtureSampler

TRAIN = {"max_steps": 40, "global_batch_tokens": 1024}
CURRICULUM = {"stages": [{"name": "english", "share": 0.25, "languages": {"en": 1.0, "fr": 0.0}},
                         {"name": "mixed", "share": 0.75, "languages": {"en": 0.3, "fr": 0.7}}],
              "max_epochs": 20}


@pytest.fixture(scope="module")
def mixture(tmp_path_factory):
    """A two-stage mixture with canaries: 25% English, then 30/70 English/French."""
    root = tmp_path_factory.mktemp("sampler")
    run_dir = build_run(root)
    run_mixture(root, recipe(root, train=TRAIN, mixture=CURRICULUM), run_dir)
    return run_dir / "mixture"


def batches(sampler: MixtureSampler, n: int) -> list:
    return [sampler.next_batch() for _ in range(n)]


def same(a, b) -> bool:
    return (torch.equal(a.input_ids, b.input_ids) and torch.equal(a.targets, b.targets)
            and torch.equal(a.lang_ids, b.lang_ids) and a.lang_tokens == b.lang_tokens
            and (a.document_ids is None) == (b.document_ids is None)
            and (a.document_ids is None or torch.equal(a.document_ids, b.document_ids)))


def test_curriculum_switches_at_the_stage_boundary(mixture):
    sampler = MixtureSampler(mixture, 64, 1, seed=5)
    langs = [sampler.languages[int(b.lang_ids[0, 0])] for b in batches(sampler, 400)]
    first_mixed = math.ceil(10240 / 64)  # the first sequence starting at or after token 10,240
    assert set(langs[:first_mixed]) == {"en"}
    assert langs[first_mixed] == "fr" or langs[first_mixed + 1] == "fr"
    mixed = langs[first_mixed:]
    assert mixed.count("fr") / len(mixed) == pytest.approx(0.7, abs=0.01)


def test_shares_hold_over_a_long_run(tmp_path):
    run_dir = build_run(tmp_path)
    run_mixture(tmp_path, recipe(tmp_path, languages={"fr": 0.7, "en": 0.3}, train={"max_steps": 500, "global_batch_tokens": 1024},
                                 mixture={"max_epochs": 100, "canaries": {"count": 0}}), run_dir)
    sampler = MixtureSampler(run_dir / "mixture", 32, 8, seed=1)
    totals = {"fr": 0, "en": 0}
    for batch in batches(sampler, 2000):  # 512,000 tokens: the whole budget, many epochs
        for lang, n in batch.lang_tokens.items():
            totals[lang] += n
    assert sum(totals.values()) == 2000 * 8 * 32
    assert totals["fr"] / sum(totals.values()) == pytest.approx(0.7, abs=0.01)
    assert totals["fr"] == 11_200 * 32  # exact at the budget's end: 70% of its 16,000 sequences


def test_resume_gives_the_batches_of_an_uninterrupted_run(mixture):
    kwargs = {"seed": 9, "document_masking": True, "rank": 1, "world_size": 2}
    straight = batches(MixtureSampler(mixture, 64, 3, **kwargs), 120)  # crosses the stage boundary and epochs
    first = MixtureSampler(mixture, 64, 3, **kwargs)
    batches(first, 50)
    state = json.loads(json.dumps(first.state_dict()))
    resumed = MixtureSampler(mixture, 64, 3, **kwargs)
    resumed.load_state_dict(state)
    assert all(same(a, b) for a, b in zip(straight[50:], batches(resumed, 70)))
    other = MixtureSampler(mixture, 64, 3, seed=10)
    with pytest.raises(FournilError, match="seed"):
        other.load_state_dict(state)


def test_ranks_split_the_stream_without_overlap(mixture):
    single = batches(MixtureSampler(mixture, 64, 2, seed=4), 48)
    ranks = [batches(MixtureSampler(mixture, 64, 2, seed=4, rank=r, world_size=3), 16) for r in range(3)]
    for c in range(16):
        for r in range(3):
            assert same(ranks[r][c], single[3 * c + r])
    rows = [tuple(row.tolist()) for rank in ranks for b in rank for row in b.input_ids]
    assert len(set(rows)) == len(rows) == 96  # within an epoch no window is read twice


def test_every_canary_appears_exactly_as_often_as_listed(mixture):
    canaries = json.loads((mixture / "canaries.json").read_text())
    T = 64
    sampler = MixtureSampler(mixture, T, 4, seed=2)
    inputs = torch.cat([b.input_ids for b in batches(sampler, math.ceil(40960 / T / 4))])
    text = "|" + "|".join(",".join(map(str, row.tolist())) for row in inputs) + "|"
    for c in canaries:
        needle = ",".join(map(str, c["token_ids"]))
        assert text.count(needle) == c["repeats"]
        for p in c["positions"]:
            assert inputs[p // T, p % T: p % T + c["length"]].tolist() == c["token_ids"]
    with pytest.raises(FournilError, match="seq_len 48 cuts through canary slots of 64 tokens"):
        MixtureSampler(mixture, 48, 4, seed=2)


def test_document_masking(mixture):
    sampler = MixtureSampler(mixture, 64, 4, seed=3, document_masking=True)
    eos = sampler.eos
    for batch in batches(sampler, 5):
        ends = batch.input_ids == eos
        assert torch.equal(batch.targets == -100, ends)
        assert torch.equal(batch.document_ids, torch.cumsum(ends.long(), 1) - ends.long())
        assert sum(batch.lang_tokens.values()) == int((batch.targets != -100).sum())
        kept = ~ends[:, :-1]
        assert torch.equal(batch.targets[:, :-1][kept], batch.input_ids[:, 1:][kept])
    plain = MixtureSampler(mixture, 64, 4, seed=3).next_batch()
    assert plain.document_ids is None and (plain.targets != -100).all()
    assert torch.equal(plain.targets[:, :-1], plain.input_ids[:, 1:])


def test_a_language_smaller_than_one_sequence_does_not_crash(tmp_path):
    run_dir = build_run(tmp_path)
    languages = {"fr": 0.49, "en": 0.49, "de": 0.02}  # de: one document of about ten tokens
    run_mixture(tmp_path, recipe(tmp_path, languages=languages, train=TRAIN, mixture={"max_epochs": 500}), run_dir)
    sampler = MixtureSampler(run_dir / "mixture", 64, 8, seed=0)
    de = sum(b.lang_tokens["de"] for b in batches(sampler, 80))
    assert de == pytest.approx(0.02 * 80 * 8 * 64, abs=64)


def test_bad_or_missing_shard_is_a_clear_error(tmp_path):
    run_dir = build_run(tmp_path)
    run_mixture(tmp_path, recipe(tmp_path, train=TRAIN, mixture={"canaries": {"count": 0}}), run_dir)
    shard = run_dir / "mixture" / "shards" / "fr" / "fr-wiki.bin"
    shard.write_bytes(shard.read_bytes()[:-6])
    with pytest.raises(FournilError, match="fr-wiki: fr-wiki.bin has .* bytes, the header says"):
        MixtureSampler(run_dir / "mixture", 64, 1, seed=0)
    shard.unlink()
    with pytest.raises(FournilError, match="fr-wiki.bin is missing"):
        MixtureSampler(run_dir / "mixture", 64, 1, seed=0)
    with pytest.raises(FournilError, match="run `fournil mixture RECIPE` first"):
        MixtureSampler(tmp_path / "nowhere", 64, 1, seed=0)


def test_each_group_reads_its_windows_in_order_across_periods_and_stages(mixture, monkeypatch):
    """Window k of a group goes to that group's k-th sequence: none skipped, none read twice."""
    from fournil.mixture import sampler as module

    monkeypatch.setattr(module, "PERIOD", 50)  # stage one is 160 sequences: three periods and a part
    sampler = MixtureSampler(mixture, 64, 1, seed=8)
    groups, windows = sampler._locate(np.arange(3000))
    for g in set(groups.tolist()):
        assert windows[groups == g].tolist() == list(range(int((groups == g).sum())))
    en = [i for i, key in enumerate(k["key"] for k in sampler.plan["groups"]) if key.startswith("en/")]
    assert all(g in en for g in groups[:160].tolist()) and not all(g in en for g in groups[160:].tolist())


def test_a_token_id_past_the_vocabulary_is_an_error_naming_the_shard(mixture, tmp_path):
    import shutil

    copy = tmp_path / "mixture"
    shutil.copytree(mixture, copy)
    shard = copy / "shards" / "en" / "en-wiki.bin"  # the first curriculum stage is English only
    tokens = np.fromfile(shard, dtype="<u2")
    tokens[::50] = 60000  # in the dtype's range, past the vocabulary
    tokens.tofile(shard)
    sampler = MixtureSampler(copy, 64, 8, seed=0)
    with pytest.raises(FournilError, match=r"shard shards/en/en-wiki: token id 60000 is outside the vocabulary of \d+: "
                                           r"the shard is damaged; rerun the mixture stage: `fournil mixture RECIPE --force`"):
        batches(sampler, 20)
