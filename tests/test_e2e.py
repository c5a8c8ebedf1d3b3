"""The whole bake on a small recipe of real text: every stage, then a second run that does no work."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

RECIPE = Path(__file__).parent / "recipes" / "mini.yaml"  # baked by tests/conftest.py
STAGES = ("corpus", "tokenizer", "mixture", "train", "sft", "evaluate", "release")


def manifest(run_dir: Path, stage: str) -> dict:
    return json.loads((run_dir / stage / "manifest.json").read_text())


def test_every_stage_closes_with_a_manifest(baked):
    for stage in STAGES:
        m = manifest(baked, stage)
        assert m["stage"] == stage and m["outputs"] and m["wall_seconds"] >= 0


def test_corpus_accounts_for_both_languages(baked):
    figures = manifest(baked, "corpus")["figures"]
    for lang in ("fr", "en"):
        assert figures["per_language"][lang]["documents"] > 0
        assert figures["per_language"][lang]["heldout_documents"] > 0


def test_heldout_keys_never_train_in_any_language(baked):
    from fournil.corpus.documents import iter_documents

    def keys(split):
        return {d["id"].split("#")[0] for d in iter_documents(baked / "corpus", split)}

    assert keys("heldout") and not keys("heldout") & keys("train")


def test_release_is_a_loadable_model_with_a_card(baked):
    release = baked / "release"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "README.md"):
        assert (release / name).is_file(), name
    card = (release / "README.md").read_text()
    evaluation = manifest(baked, "evaluate")["figures"]["per_language"]
    for lang in ("fr", "en"):
        assert f"{evaluation[lang]['bits_per_byte']:.3f}" in card


def test_model_beats_the_unigram_baseline(baked):
    evaluation = manifest(baked, "evaluate")["figures"]["per_language"]
    summary = (baked.parent / "stdout.txt").read_text().splitlines()
    for lang in ("fr", "en"):
        assert evaluation[lang]["bits_per_byte"] < evaluation[lang]["unigram_bits_per_byte"], lang
        line = next(line for line in summary if line.startswith(lang + " "))
        assert line.split()[1:] == [f"{evaluation[lang]['bits_per_byte']:.3f}", f"{evaluation[lang]['unigram_bits_per_byte']:.3f}", "yes"]
    assert f"model card: {baked / 'release' / 'README.md'}" in summary


def test_training_and_evaluate_score_the_same_heldout_documents(baked):
    """The trainer's last evaluation of train/final and the evaluate stage's scoring read one held-out sample, so
    they agree (before, training read the first 50,000 characters and evaluate 10 documents from each source in turn)."""
    from fournil.corpus.heldout import heldout_samples
    from fournil.evaluate.stage import open_checkpoint
    from fournil.evaluate.suite import language_scores
    from fournil.recipe import load_recipe
    from fournil.tokenizer import load, special_ids

    recipe = load_recipe(RECIPE)
    texts = heldout_samples(baked / "corpus", ["fr", "en"], recipe.evaluate.max_docs_per_language)
    model = open_checkpoint(baked / "train" / "final", load(baked / "tokenizer"), special_ids(baked / "tokenizer"), "cpu")
    scores = language_scores(model, texts, {}, recipe.evaluate)
    trained = manifest(baked, "train")["figures"]["per_language"]
    evaluated = json.loads((baked / "evaluate" / "results.json").read_text())["checkpoints"][-1]["per_language"]
    for lang in ("fr", "en"):
        assert 0 < scores[lang]["documents"] == len(texts[lang]) == evaluated[lang]["documents"] <= 10
        assert scores[lang]["bytes"] == evaluated[lang]["bytes"]
        assert abs(trained[lang]["bits_per_byte"] - scores[lang]["bits_per_byte"]) < 2e-5, lang


def test_second_run_does_no_work(baked):
    before = {s: manifest(baked, s)["finished_at"] for s in STAGES}
    result = subprocess.run([sys.executable, "-m", "fournil", "run", str(RECIPE), "--runs-dir", str(baked.parent)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.count("up to date, skipped") == len(STAGES)
    assert {s: manifest(baked, s)["finished_at"] for s in STAGES} == before


def test_changed_training_setting_keeps_the_checkpoints_until_forced_then_reruns_train_and_after_only(baked, tmp_path):
    import shutil

    copy = tmp_path / "mini"
    shutil.copytree(baked, copy)

    def fournil(*args: str, setting: str = "train.lr=0.002") -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "fournil", *args, str(RECIPE), "--runs-dir", str(tmp_path),
                               "--set", setting], capture_output=True, text=True)

    mixture = (copy / "mixture" / "manifest.json").read_text()
    longer = fournil("run", setting="train.max_steps=60")  # the mixture is planned for max_steps: the run would re-plan it
    assert longer.returncode == 2 and longer.stderr.strip().splitlines()[-1] == (
        f"error: {copy / 'train'} holds checkpoints/step_* made with other settings or inputs (the mixture stage's output, "
        f"as train.max_steps: 40 → 60 there); to discard it and start afresh, run `fournil train RECIPE --force`; "
        f"to keep it, move it away first")
    assert (copy / "mixture" / "manifest.json").read_text() == mixture, "refused before the mixture was planned again"

    refused = fournil("run")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines()[-1] == (
        f"error: {copy / 'train'} holds checkpoints/step_* made with other settings or inputs (train.lr: 0.003 → 0.002); "
        f"to discard it and start afresh, run `fournil train RECIPE --force`; to keep it, move it away first")
    assert (copy / "train" / "final").is_dir()
    forced = fournil("train", "--force")
    assert forced.returncode == 0, forced.stderr[-2000:]
    assert f"[train] --force: the earlier work in {copy / 'train'} is discarded" in forced.stderr
    tuned = fournil("run")  # the chat model was tuned from the old base: its checkpoints are kept until forced too
    assert tuned.returncode == 2 and tuned.stderr.strip().splitlines()[-1].startswith(
        f"error: {copy / 'sft'} holds checkpoints/step_* made with other settings or inputs (the train stage's output")
    assert fournil("sft", "--force").returncode == 0
    result = fournil("run")
    assert result.returncode == 0, result.stderr[-2000:]
    for stage in ("corpus", "tokenizer", "mixture", "train", "sft"):
        assert f"[{stage}] up to date, skipped" in result.stderr
    for stage in ("evaluate", "release"):
        assert f"[{stage}] running" in result.stderr


def test_changed_description_reruns_the_release_alone_and_the_card_says_it(baked, tmp_path):
    import shutil

    shutil.copytree(baked, tmp_path / "mini")
    result = subprocess.run([sys.executable, "-m", "fournil", "run", str(RECIPE), "--runs-dir", str(tmp_path),
                             "--set", "description=A second description"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.count("up to date, skipped") == len(STAGES) - 1 and "[release] running" in result.stderr
    assert "A second description" in (tmp_path / "mini" / "release" / "README.md").read_text()


def test_damage_is_caught_on_every_read_with_one_line_naming_the_file_and_the_stage(baked, tmp_path):
    import shutil

    copy = tmp_path / "mini"
    shutil.copytree(baked, copy)

    def fournil(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "fournil", *args, str(RECIPE), "--runs-dir", str(tmp_path)], capture_output=True, text=True)

    def flip(path: Path, offset: int) -> None:  # one byte, same size
        data = bytearray(path.read_bytes())
        data[offset] ^= 0x01
        path.write_bytes(bytes(data))

    weights = copy / "train" / "final" / "model.safetensors"
    flip(weights, weights.stat().st_size // 2)
    result = fournil("run")
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1] == (
        f"error: {weights} does not match the hash the train stage recorded: it is damaged; "
        "rerun that stage: `fournil train RECIPE --force`"), result.stderr[-2000:]
    flip(weights, weights.stat().st_size // 2)
    shard = copy / "mixture" / "shards" / "fr" / "fr-gnome.bin"
    flip(shard, 100)  # an id still inside the vocabulary: only the hash tells
    checkpoints = sorted(p.name for p in (copy / "train" / "checkpoints").iterdir())
    result = fournil("train", "--force")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr[-2000:]
    assert f"{shard} does not match the hash the mixture stage recorded" in result.stderr
    assert sorted(p.name for p in (copy / "train" / "checkpoints").iterdir()) == checkpoints  # --force discarded nothing


def test_the_release_is_the_tuned_chat_model_with_its_data_and_scores(baked):
    sft = manifest(baked, "sft")["figures"]
    assert sft["instruction_tuned"] and sft["steps"] == 8 and sft["chat_template"] == "chatml"
    by_name = {s["name"]: s for s in sft["sources"]}
    assert by_name["chatterbot-fr"]["license"] == "BSD-3-Clause" and by_name["chatterbot-fr"]["trained_tokens"] > 0
    assert all(sft["per_language"][lang]["heldout_loss"] > 0 for lang in ("fr", "en"))
    chat = manifest(baked, "evaluate")["figures"]["chat"]
    assert {"fr", "en"} <= set(chat) and all(c["conversations"] > 0 for c in chat.values())
    translation = manifest(baked, "evaluate")["figures"]["chat_translation"]  # the shipped translation tasks, asked in chat form
    assert set(translation) == {"en-fr", "fr-en"} and all(t["examples"] == 100 and t["chrf"]["value"] >= 0 for t in translation.values())
    names = [c["name"] for c in manifest(baked, "evaluate")["figures"]["checkpoints"]]
    assert names == ["sft"]  # the released chat model, not the base one, is scored
    from safetensors.torch import load_file

    released, tuned = load_file(baked / "release" / "model.safetensors"), load_file(baked / "sft" / "final" / "model.safetensors")
    assert torch_equal(released["model.embed_tokens.weight"], tuned["embed.weight"])
    card = (baked / "release" / "README.md").read_text()
    assert "## Instruction tuning" in card and "chatterbot-fr | fr | BSD-3-Clause" in card
    from fournil.release.render import num

    assert f"| en-fr | en | 100 | {num(translation['en-fr']['chrf']['value'])} |" in card
    assert "training_type: pre-training and fine-tuning" in card


def test_a_chat_model_folder_gets_the_stage_chat_scores(baked, tmp_path):
    """`fournil evaluate RELEASE` scores the released chat model as the stage scored sft/final: same answers, same figures."""
    from fournil.evaluate.chat import evaluate_chat, read_heldout
    from fournil.evaluate.command import config_from_overrides, evaluate_folder, is_chat_model, main
    from fournil.evaluate.tasks import load_task
    from fournil.model.generate import Generator

    release = baked / "release"
    assert is_chat_model(release, release) and is_chat_model(baked / "sft" / "final", baked / "tokenizer")
    assert not is_chat_model(baked / "train" / "final", baked / "tokenizer")  # the same template, but a base model
    tasks = ["translation_en_fr", "translation_fr_en"]
    config = config_from_overrides(["evaluate.max_examples=4", "evaluate.max_docs_per_language=2"])
    folder = evaluate_folder(release, tmp_path / "with-run", config, run_dir=baked, tasks=tasks, log=lambda *_: None)["chat"]
    stage = evaluate_chat(Generator(baked / "sft" / "final", baked / "tokenizer", "cpu"), read_heldout(baked / "sft" / "heldout.jsonl"),
                          [load_task(t, Path.cwd()) for t in tasks], ["fr", "en"], config, log=lambda *_: None)
    assert folder == stage and set(folder["translation"]) == {"en-fr", "fr-en"}
    assert all(t["examples"] == 4 for t in folder["translation"].values())
    recorded = json.loads((baked / "evaluate" / "results.json").read_text())["chat"]  # the stage's own run, 100 per language
    assert folder["examples"] == recorded["examples"] and len(folder["examples"]) == 4  # its first answers, word for word
    # no run folder: the card's languages, the shipped seed tasks, defaults from the folder
    out = main(release, ["evaluate.max_examples=2"], Path("runs"), False, None, [], "translation_en_fr", None, tmp_path / "alone", None, "cpu")
    alone = json.loads((out / "results.json").read_text())["chat"]
    assert {lang: r["conversations"] for lang, r in alone["per_language"].items()} == {"en": 2, "fr": 2}
    assert all(r["fidelity"]["judged"] + r["fidelity"]["unjudged"] == 2 for r in alone["per_language"].values())
    assert alone["examples"][0]["prompt"] == ("Rewrite this sentence so that it sounds polite and professional.\n\n"
                                              "Send me the report by Friday or don't bother coming in on Monday.")
    assert list(alone["translation"]) == ["en-fr"] and alone["translation"]["en-fr"]["examples"] == 2
    assert "## Chat" in (out / "results.md").read_text() and "| en-fr | en | 2 |" in (out / "results.md").read_text()


def torch_equal(a, b) -> bool:
    import torch

    return torch.equal(a.float(), b.float())
