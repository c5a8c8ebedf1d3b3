"""The mixture stage: token shards, the plan (weights, alpha, curriculum, epoch cap), parallel pairs, canaries."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mixture_helpers import build_run, documents, recipe, run_mixture

from fournil.errors import FournilError
from fournil.mixture.config import MixtureConfig
from fournil.mixture.plan import Group, make_plan
from fournil.mixture.shards import dtype_for, open_shard, write_shard
from fournil.tokenizer import load

TRAIN = {"max_steps": 40, "global_batch_tokens": 1024}  # 40,960 tokens: about 2.5 epochs of the fake corpus


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixture")
    run_dir = build_run(root, parallel_rows=40)
    manifest = run_mixture(root, recipe(root, parallel=True, train=TRAIN), run_dir)
    return root, run_dir, manifest


def test_shards_hold_every_document_then_eos(built):
    root, run_dir, _ = built
    tokenizer = load(run_dir / "tokenizer")
    eos = tokenizer.token_to_id("<|end_of_text|>")
    shard = open_shard(run_dir / "mixture" / "shards" / "fr" / "fr-news")
    expected = [d["text"] for d in documents("fr", "fr-news", 60, 30)]
    assert shard.header["documents"] == 60 and shard.header["dtype"] == "<u2"
    assert shard.header["category"] == "news" and shard.header["lang"] == "fr"
    assert len(shard.tokens) == shard.header["tokens"] == int(shard.ends[-1])
    starts = np.concatenate([[0], shard.ends[:-1]]).astype(int)
    decoded = [tokenizer.decode(shard.tokens[a:b - 1].tolist()) for a, b in zip(starts, shard.ends.astype(int))]
    assert decoded == expected
    assert (shard.tokens[shard.ends.astype(int) - 1] == eos).all()
    assert (shard.tokens == eos).sum() == 60  # no EOS inside a document


def test_plan_gives_each_language_its_share_and_counts_epochs(built):
    _, run_dir, manifest = built
    plan = json.loads((run_dir / "mixture" / "plan.json").read_text())
    assert plan["budget_tokens"] == 40 * 1024 and plan["languages"] == ["fr", "en"]
    by_key = {g["key"]: g for g in plan["groups"]}
    assert set(by_key) == {"fr/fr-wiki", "fr/fr-news", "en/en-wiki", "fr/pairs", "en/pairs"}
    for lang in ("fr", "en"):
        planned = sum(g["planned_tokens"] for g in plan["groups"] if g["lang"] == lang)
        assert abs(planned - 20480) <= 2
        assert manifest["figures"]["per_language"][lang]["share"] == pytest.approx(0.5, abs=1e-4)
    # natural proportions within a language: equal epochs
    assert by_key["fr/fr-wiki"]["epochs"] == pytest.approx(by_key["fr/fr-news"]["epochs"], rel=1e-3)
    g = by_key["en/en-wiki"]
    assert g["epochs"] == pytest.approx(g["planned_tokens"] / g["tokens"], rel=1e-3)


def test_parallel_pairs_become_documents_in_both_directions(built):
    _, run_dir, manifest = built
    tokenizer = load(run_dir / "tokenizer")
    for lang, first, second in (("fr", "English: ", "\nFrench: "), ("en", "French: ", "\nEnglish: ")):
        shard = open_shard(run_dir / "mixture" / "shards" / lang / "pairs")
        assert shard.header["category"] == "parallel" and shard.header["documents"] == 40
        text = tokenizer.decode(shard.tokens[: int(shard.ends[0]) - 1].tolist())
        assert text.startswith(first) and second in text
    assert manifest["figures"]["parallel"]["pairs"] == {"pairs": 40, "skipped": {"wrong number of fields": 1}}


def test_canaries_round_trip_and_are_listed(built):
    _, run_dir, manifest = built
    tokenizer = load(run_dir / "tokenizer")
    canaries = json.loads((run_dir / "mixture" / "canaries.json").read_text())
    assert [c["repeats"] for c in canaries] == [1, 1, 10, 10, 100, 100]
    assert manifest["figures"]["canary_insertions"] == 222
    positions = [p for c in canaries for p in c["positions"]]
    assert len(set(positions)) == 222 and all(p % 64 == 1 for p in positions)
    for c in canaries:
        assert c["length"] == len(c["token_ids"]) >= 32
        assert tokenizer.encode(c["text"]).ids == c["token_ids"] and tokenizer.decode(c["token_ids"]) == c["text"]
        assert len(c["positions"]) == c["repeats"]
    assert len({c["text"] for c in canaries}) == 6


def test_canaries_can_be_switched_off(tmp_path):
    run_dir = build_run(tmp_path)
    run_mixture(tmp_path, recipe(tmp_path, train=TRAIN, mixture={"canaries": {"count": 0}}), run_dir)
    assert json.loads((run_dir / "mixture" / "canaries.json").read_text()) == []


def test_plan_over_the_epoch_cap_is_refused_with_what_to_change(tmp_path):
    run_dir = build_run(tmp_path)
    with pytest.raises(FournilError) as error:
        run_mixture(tmp_path, recipe(tmp_path, train={"max_steps": 1000, "global_batch_tokens": 1024}), run_dir)
    message = str(error.value)
    assert "en/en-wiki would be read 81.3 times" in message  # 512,000 planned tokens of 6,300
    assert "mixture.max_epochs = 4" in message and "train.max_steps" in message and "add en data" in message
    assert "\n" not in message


GROUPS = [Group("fr", "wiki", "web", 6000, 10), Group("fr", "news", "news", 2000, 10), Group("en", "web", "web", 8000, 10)]


def shares_of(plan: dict, stage: int = 0) -> dict[str, float]:
    return {key: g["share"] for key, g in plan["stages"][stage]["groups"].items()}


def test_weights_by_category_and_alpha():
    natural = make_plan(GROUPS, {"fr": 0.6, "en": 0.4}, MixtureConfig(), 10_000)
    assert shares_of(natural) == pytest.approx({"fr/wiki": 0.45, "fr/news": 0.15, "en/web": 0.4})
    weighted = make_plan(GROUPS, {"fr": 0.6, "en": 0.4}, MixtureConfig(weights={"fr": {"news": 3}}), 10_000)
    assert shares_of(weighted) == pytest.approx({"fr/wiki": 0.3, "fr/news": 0.3, "en/web": 0.4})
    flat = make_plan(GROUPS, {"fr": 0.6, "en": 0.4}, MixtureConfig(alpha=0, weights={"fr": {"wiki": 2}}), 10_000)
    assert shares_of(flat) == pytest.approx({"fr/wiki": 0.4, "fr/news": 0.2, "en/web": 0.4})
    with pytest.raises(FournilError, match="mixture.weights.fr.blog: neither a source nor a category"):
        make_plan(GROUPS, {"fr": 0.6, "en": 0.4}, MixtureConfig(weights={"fr": {"blog": 1}}), 10_000)


def test_curriculum_stages_split_the_budget():
    config = MixtureConfig(stages=[
        {"name": "first", "share": 0.3, "languages": {"en": 0.7, "fr": 0.3}},
        {"name": "second", "share": 0.7, "languages": {"en": 0.4, "fr": 0.6}},
    ])
    plan = make_plan(GROUPS, {"fr": 0.5, "en": 0.5}, config, 10_000)
    assert [(s["start_token"], s["end_token"]) for s in plan["stages"]] == [(0, 3000), (3000, 10_000)]
    assert shares_of(plan, 0)["en/web"] == pytest.approx(0.7) and shares_of(plan, 1)["en/web"] == pytest.approx(0.4)
    en = next(g for g in plan["groups"] if g["key"] == "en/web")
    assert en["planned_tokens"] == 0.7 * 3000 + 0.4 * 7000


def test_a_language_without_data_is_refused():
    with pytest.raises(FournilError, match="language de should give 20.0% of the tokens but has no data"):
        make_plan(GROUPS, {"fr": 0.4, "en": 0.4, "de": 0.2}, MixtureConfig(), 1000)


def test_uint32_shards_when_the_vocabulary_is_large(tmp_path):
    assert dtype_for(65535) == np.dtype("<u2") and dtype_for(65536) == np.dtype("<u4")
    docs = [np.array([70000, 5, 1]), np.array([100_000, 1])]
    header = {"dtype": "<u4", "tokenizer_sha256": "x", "lang": "fr", "source": "s", "category": "web"}
    write_shard(tmp_path / "s", docs, header)
    shard = open_shard(tmp_path / "s")
    assert shard.tokens.tolist() == [70000, 5, 1, 100_000, 1] and shard.ends.tolist() == [3, 5]


def test_an_interrupted_stage_keeps_finished_shards(tmp_path):
    from fournil.mixture import stage
    from fournil.runs import StageContext, get_stage

    run_dir = build_run(tmp_path)
    r = recipe(tmp_path, train=TRAIN)
    run_mixture(tmp_path, r, run_dir)
    shards = run_dir / "mixture" / "shards" / "fr"
    kept = (shards / "fr-wiki.bin").stat().st_ino
    (shards / "fr-news.json").unlink()  # as if killed while writing fr-news
    ctx = StageContext(recipe=r, run_dir=run_dir, stage=get_stage("mixture"), fingerprint="f", resuming=True, log=lambda m: None)
    figures = stage.run(ctx)
    assert (shards / "fr-wiki.bin").stat().st_ino == kept and (shards / "fr-news.json").is_file()
    assert figures["per_language"]["fr"]["documents"] == 180


def test_new_shares_plan_again_on_the_kept_shards_and_give_the_bytes_of_a_fresh_run(tmp_path):
    import shutil

    from fournil.runs import read_manifest, run_stage

    run_dir = build_run(tmp_path)
    fresh_dir = tmp_path / "fresh"
    shutil.copytree(run_dir, fresh_dir)
    run_stage(recipe(tmp_path, train=TRAIN), run_dir, "mixture", log=lambda m: None)
    shards = sorted((run_dir / "mixture" / "shards").rglob("*"))
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in shards if p.is_file()}
    messages = []
    shifted = recipe(tmp_path, languages={"fr": 0.7, "en": 0.3}, train={**TRAIN, "max_steps": 30})
    manifest = run_stage(shifted, run_dir, "mixture", log=messages.append)
    assert "[mixture] resuming: encode the corpus into token shards and plan how many tokens each language and source gives" in messages
    assert manifest["figures"]["shards_encoded"] == 0 and manifest["figures"]["shards_kept"] == 3 == manifest["figures"]["groups"]
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in before} == before  # not written again
    assert manifest["figures"]["per_language"]["fr"]["share"] == pytest.approx(0.7, abs=1e-3)
    fresh = run_stage(shifted, fresh_dir, "mixture", log=lambda m: None)
    assert fresh["figures"]["shards_encoded"] == 3 and fresh["fingerprint"] == manifest["fingerprint"]
    same = [f for f in fresh["outputs"] if not f.startswith("logs/")]
    assert {f: manifest["outputs"][f] for f in same} == {f: fresh["outputs"][f] for f in same} and "plan.json" in same
    other = recipe(tmp_path, train=TRAIN, mixture={"parallel_template": "{src}\n{tgt}"})  # what the shards read: encoded again
    assert run_stage(other, run_dir, "mixture", log=lambda m: None)["figures"]["shards_encoded"] == 3
    assert read_manifest(run_dir / "mixture")["resumed"] is False
