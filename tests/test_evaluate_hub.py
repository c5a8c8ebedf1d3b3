"""lm-eval's Hub tasks in the evaluate stage: run from the local datasets cache, skipped in one line without it;
and a chat model scored through lm-eval's chat template gives the evaluate stage's own chat scores."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from evaluate_helpers import fake_run

from fournil.errors import FournilError
from fournil.evaluate.harness import cached_tasks, prepare, task_languages
from fournil.evaluate.tasks import SHIPPED_DIR
from fournil.runs import run_stage

XNLI_CHOICES = ", correct? Oui, ", ", correct? Aussi, ", ", correct? Non, "  # lm-eval's xnli_fr prompt


def cache_dataset(cache, repo: str, config: str, splits: dict[str, list[dict]]) -> None:
    """A dataset as `datasets.load_dataset(repo, config)` leaves it in HF_DATASETS_CACHE, which it reloads offline."""
    from datasets import Dataset, DatasetInfo, SplitDict, SplitInfo
    from datasets.arrow_writer import ArrowWriter

    name = repo.split("/")[-1]
    folder = cache / repo.replace("/", "___") / config / "0.0.0" / "0123456789abcdef"
    folder.mkdir(parents=True)
    split_dict = SplitDict(dataset_name=name)
    for split, rows in splits.items():
        table = Dataset.from_list(rows)
        with ArrowWriter(path=str(folder / f"{name}-{split}.arrow")) as writer:
            writer.write_table(table.data.table)
        split_dict.add(SplitInfo(name=split, num_examples=len(rows), dataset_name=name))
    DatasetInfo(features=table.features, config_name=config, dataset_name=name, splits=split_dict).write_to_directory(str(folder))


def xnli_rows(n: int) -> list[dict]:
    """NLI rows from real French text: a shipped continuation's context, with its true ending (entailment, 0) or
    another one (contradiction, 2)."""
    docs = [json.loads(line) for line in (SHIPPED_DIR / "continuation_fr.jsonl").read_text().splitlines()[:n]]
    short = lambda text: " ".join(text.split()[:4])  # noqa: E731 - within the fake run's 64-token context
    return [{"premise": short(d["context"]), "hypothesis": short(d["choices"][d["label"] if i % 2 == 0 else (d["label"] + 1) % 4]),
             "label": 0 if i % 2 == 0 else 2} for i, d in enumerate(docs)]


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty local Hugging Face cache, offline, that datasets reads even when imported before the test."""
    pytest.importorskip("lm_eval")
    import datasets

    cache = tmp_path / "hf" / "datasets"
    cache.mkdir(parents=True)
    for name, value in (("HF_HOME", str(tmp_path / "hf")), ("HF_DATASETS_CACHE", str(cache)), ("HF_HUB_OFFLINE", "1"),
                        ("HF_DATASETS_OFFLINE", "1")):
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    return cache


def test_a_cached_hub_task_runs_in_the_stage_and_an_absent_one_is_skipped_in_one_line(tmp_path, hf_cache):
    rows = xnli_rows(6)
    cache_dataset(hf_cache, "facebook/xnli", "fr", {"train": rows[:2], "validation": rows, "test": rows})
    recipe, run_dir = fake_run(tmp_path, {"tasks": [], "harness_tasks": ["xnli_fr", "belebele_fra_Latn"], "memorisation": False,
                                          "max_examples": 6, "device": "cpu"})
    lines: list[str] = []
    figures = run_stage(recipe, run_dir, "evaluate", log=lines.append)["figures"]

    skipped = [line for line in lines if "belebele_fra_Latn" in line]
    assert len(skipped) == 1 and skipped[0].startswith("[evaluate] lm-eval task belebele_fra_Latn skipped: its data is not in "
                                                       f"the local datasets cache {hf_cache}")
    assert figures["harness"]["ran"] == ["xnli_fr"] and set(figures["harness"]["skipped"]) == {"belebele_fra_Latn"}
    assert figures["harness"]["chat_template"] is False  # a base model
    xnli = figures["task_details"]["xnli_fr"]
    assert xnli["harness"] == "lm-eval" and xnli["languages"] == ["fr"] and xnli["examples"] == 6 and xnli["headline"] == "acc"
    assert xnli["dataset"] == {"path": "facebook/xnli", "name": "fr", "split": "validation"}
    assert xnli["metrics"]["chance"] == pytest.approx(1 / 3)
    acc = xnli["metrics"]["acc"]
    assert acc["value"] * 6 == pytest.approx(round(acc["value"] * 6))
    assert acc["stderr"] == pytest.approx((acc["value"] * (1 - acc["value"]) / 5) ** 0.5)  # lm-eval's: sample variance over n
    assert figures["tasks"]["xnli_fr"] == {"fr": {"acc": acc["value"]}}  # what the card's model-index reads

    # fournil's own runner, on the same rows and prompt as a local task file, picks the same answers
    from fournil.evaluate.models import open_model
    from fournil.evaluate.runner import run_task
    from fournil.evaluate.tasks import load_task

    (tmp_path / "xnli_fr.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    choices = "[" + ", ".join(f'premise+"{c}"+hypothesis' for c in XNLI_CHOICES) + "]"
    (tmp_path / "xnli_fr_local.yaml").write_text(json.dumps({
        "task": "xnli_fr_local", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": "xnli_fr.jsonl"}},
        "test_split": "test", "output_type": "multiple_choice", "doc_to_text": "", "doc_to_target": "label",
        "doc_to_choice": "{{" + choices + "}}"}))
    ours = run_task(open_model(run_dir / "train" / "final", run_dir / "tokenizer"), load_task(str(tmp_path / "xnli_fr_local.yaml")),
                    num_fewshot=0, max_examples=6)["metrics"]
    assert ours["acc"]["value"] == pytest.approx(acc["value"]) and ours["chance"] == pytest.approx(1 / 3)


def test_harness_task_names_and_a_missing_lm_eval(monkeypatch):
    known = type("Index", (), {"all_tasks": ["xnli_fr", "arc_pt"]})()
    with pytest.raises(FournilError, match=r"evaluate.harness_tasks: lm-eval .*has no task 'xnli_fx'"):
        cached_tasks(["xnli_fr", "xnli_fx"], known)
    monkeypatch.setitem(sys.modules, "lm_eval.tasks", None)  # as if lm-eval were not installed
    lines: list[str] = []
    assert prepare(["xnli_fr", "arc_pt"], lines.append)[:2] == (
        [], {"xnli_fr": "lm-eval is not installed (pip install 'fournil[eval]')", "arc_pt": "lm-eval is not installed (pip install 'fournil[eval]')"})
    assert lines == [f"[evaluate] lm-eval task {n} skipped: lm-eval is not installed (pip install 'fournil[eval]')" for n in ("xnli_fr", "arc_pt")]
    assert prepare([], lines.append) == ([], {}, None)
    langs = ["pt", "fr"]
    assert [task_languages(n, langs) for n in ("xnli_fr", "belebele_fra_Latn", "m_mmlu_pt", "truthfulqa_pt_mc2", "french_bench_arc_challenge",
                                              "xcopa_it", "xcopa_sw", "hellaswag")] == [["fr"], ["fr"], ["pt"], ["pt"], ["fr"], ["it"], [], []]


def test_the_chat_model_scores_alike_through_lm_evals_chat_template(baked, tmp_path):
    """The baked mini run's chat model on its held-out conversations: `fournil evaluate RECIPE --harness lm-eval --tasks
    chat_heldout` (chat template on by itself, for a tuned run) writes the answers and chrF of the evaluate stage's own chat
    scoring of the same prompts."""
    pytest.importorskip("lm_eval")
    from conftest import MINI
    from fournil.evaluate.chat import chat_scores, read_heldout, single_turn
    from fournil.evaluate.command import main
    from fournil.model.generate import Generator, Sampling

    per_language, new_tokens = 3, 16
    out = main(MINI, [f"evaluate.max_examples={per_language}", f"evaluate.max_new_tokens={new_tokens}"], baked.parent, False,
               None, [], "chat_heldout", "lm-eval", tmp_path / "harness", None, "cpu")
    summary = json.loads((out / "harness.json").read_text())
    assert summary["chat_template"] is True and sorted(summary["results"]) == ["chat_heldout_en", "chat_heldout_fr"]

    single = [c for c in read_heldout(baked / "sft" / "heldout.jsonl") if single_turn(c)]
    ours = chat_scores(Generator(baked / "sft" / "final", baked / "tokenizer", "cpu"), single, ["fr", "en"],
                       Sampling(max_new_tokens=new_tokens, repetition_penalty=1.1), per_language)
    for lang in ("fr", "en"):
        task = f"chat_heldout_{lang}"
        assert summary["n-samples"][task]["effective"] == ours["per_language"][lang]["conversations"] == per_language
        theirs = [s["answer"].strip() for s in summary["tasks_meta"][task]["samples"]]
        mine = [e["answer"] for e in ours["examples"] if e["lang"] == lang]
        assert mine and theirs[:len(mine)] == mine[:len(theirs)]
        assert summary["results"][task]["chrf,none"] == pytest.approx(ours["per_language"][lang]["chrf"]["value"])


def test_translation_in_chat_form_scores_alike_through_lm_eval(baked, tmp_path):
    """`--tasks chat_translation`: the recipe's shipped translation tasks asked in chat form as lm-eval tasks give the
    evaluate stage's chat-form translation chrF (`translation_scores`) on the same requests of the baked mini chat model."""
    pytest.importorskip("lm_eval")
    from conftest import MINI
    from fournil.evaluate.chat import translation_scores
    from fournil.evaluate.command import main
    from fournil.evaluate.tasks import load_task
    from fournil.model.generate import Generator, Sampling

    per_direction, new_tokens = 3, 16
    out = main(MINI, [f"evaluate.max_examples={per_direction}", f"evaluate.max_new_tokens={new_tokens}"], baked.parent, False,
               None, [], "chat_translation", "lm-eval", tmp_path / "harness", None, "cpu")
    summary = json.loads((out / "harness.json").read_text())
    assert summary["chat_template"] is True
    assert sorted(summary["results"]) == ["chat_translation_en_fr", "chat_translation_fr_en"]
    ours = translation_scores(Generator(baked / "sft" / "final", baked / "tokenizer", "cpu"),
                              [load_task("translation_en_fr", Path.cwd()), load_task("translation_fr_en", Path.cwd())], ["fr", "en"],
                              Sampling(max_new_tokens=new_tokens, repetition_penalty=1.1), per_direction)
    for direction in ("en-fr", "fr-en"):
        task = "chat_translation_" + direction.replace("-", "_")
        assert summary["n-samples"][task]["effective"] == ours[direction]["examples"] == per_direction
        assert summary["results"][task]["chrf,none"] == pytest.approx(ours[direction]["chrf"]["value"])
    prompts = [json.loads(line)["prompt"] for line in (out / "chat_translation" / "chat_translation_fr_en.jsonl").read_text().splitlines()]
    assert len(prompts) == per_direction and all(p.startswith("Traduis en anglais :\n") for p in prompts)


def test_a_chat_model_folder_scores_alike_through_lm_eval_without_its_run(baked, tmp_path):
    """The baked run's release folder alone (no run): `fournil evaluate FOLDER --harness lm-eval --tasks
    chat_heldout,chat_translation` asks the shipped seed tasks and translation tasks of the languages its card names,
    and gets the answers and chrF of the evaluate stage's own chat scoring of the same prompts."""
    pytest.importorskip("lm_eval")
    import shutil

    from fournil.evaluate.chat import chat_scores, seed_conversations, translation_lm_eval_tasks, translation_scores
    from fournil.evaluate.command import main
    from fournil.evaluate.tasks import load_task
    from fournil.model.generate import Generator, Prompter, Sampling

    folder = shutil.copytree(baked / "release", tmp_path / "chat-model", ignore=shutil.ignore_patterns("*.gguf"))
    per_language, new_tokens = 2, 12
    out = main(folder, [f"evaluate.max_examples={per_language}", f"evaluate.max_new_tokens={new_tokens}"], tmp_path, False,
               None, [], "chat_heldout,chat_translation", "lm-eval", tmp_path / "harness", None, "cpu")
    summary = json.loads((out / "harness.json").read_text())
    assert summary["chat_template"] is True
    assert sorted(summary["results"]) == ["chat_heldout_en", "chat_heldout_fr", "chat_translation_en_fr", "chat_translation_fr_en"]
    generator, sampling = Generator(folder, device="cpu"), Sampling(max_new_tokens=new_tokens, repetition_penalty=1.1)
    ours = chat_scores(generator, seed_conversations(["en", "fr"]), ["en", "fr"], sampling, per_language)
    for lang in ("en", "fr"):
        task = f"chat_heldout_{lang}"
        assert summary["n-samples"][task]["effective"] == ours["per_language"][lang]["conversations"] == per_language
        assert summary["results"][task]["chrf,none"] == pytest.approx(ours["per_language"][lang]["chrf"]["value"])
    translations = translation_scores(generator, [load_task(f"translation_{d}", Path.cwd()) for d in ("en_fr", "fr_en")],
                                      ["en", "fr"], sampling, per_language)
    for direction in ("en-fr", "fr-en"):
        task = "chat_translation_" + direction.replace("-", "_")
        assert summary["results"][task]["chrf,none"] == pytest.approx(translations[direction]["chrf"]["value"])
    (folder / "model.safetensors").unlink()  # which requests fit is decided without the weights
    written = translation_lm_eval_tasks(Prompter(folder), [load_task("translation_fr_en", Path.cwd())], tmp_path / "again", per_language,
                                        new_tokens)
    assert written[0].with_suffix(".jsonl").read_bytes() == (out / "chat_translation" / "chat_translation_fr_en.jsonl").read_bytes()


def test_chat_prompts_need_a_chat_template(tmp_path):
    pytest.importorskip("lm_eval")
    import dataclasses

    import torch
    from evaluate_helpers import make_tokenizer

    from fournil.evaluate.harness import run_harness
    from fournil.model.io import save_model
    from fournil.model.llama import Llama
    from fournil.model.presets import PRESETS

    make_tokenizer(tmp_path / "tokenizer", ["le chat dort", "the cat sleeps"], vocab_size=300)  # no chat_template
    torch.manual_seed(0)
    save_model(Llama(dataclasses.replace(PRESETS["tiny"], vocab_size=300)), tmp_path / "model")
    with pytest.raises(FournilError, match="has no chat_template, which --chat needs"):
        run_harness(tmp_path / "model", ["xnli_fr"], tmp_path / "out", tmp_path / "tokenizer", chat=True)


def test_which_folders_are_chat_models(tmp_path):
    """--chat's default: a chat template of the model's own, or fournil's template with a card tagged conversational or in an
    sft stage folder; fournil's template alone is every fournil base model's."""
    from fournil.evaluate.command import is_chat_model, main
    from fournil.tokenizer.chat import CHAT_TEMPLATE

    def folder(name, template, tags=None, architectures=True):
        path = tmp_path / name
        path.mkdir(parents=True)
        (path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]} if architectures else {"dim": 8}))
        (path / "tokenizer_config.json").write_text(json.dumps({"chat_template": template} if template else {}))
        if tags is not None:
            (path / "README.md").write_text("---\n" + json.dumps({"language": ["fr"], "tags": tags}) + "\n---\n# card\n")
        return path

    verdicts = {name: is_chat_model(path, path) for name, path in [
        ("foreign chat", folder("a", "{{ messages }}")), ("no template", folder("b", None)),
        ("fournil export", folder("c", CHAT_TEMPLATE)), ("fournil base release", folder("d", CHAT_TEMPLATE, ["fournil", "llama"])),
        ("fournil chat release", folder("e", CHAT_TEMPLATE, ["fournil", "conversational"])),
        ("train/final", folder("run/train/final", CHAT_TEMPLATE, architectures=False))]}
    (tmp_path / "run" / "sft").mkdir()
    (tmp_path / "run" / "sft" / "manifest.json").write_text("{}")
    verdicts["sft/final"] = is_chat_model(folder("run/sft/final", CHAT_TEMPLATE, architectures=False), tmp_path / "run" / "sft" / "final")
    assert verdicts == {"foreign chat": True, "no template": False, "fournil export": False, "fournil base release": False,
                        "fournil chat release": True, "train/final": False, "sft/final": True}
    with pytest.raises(FournilError, match=r"--tasks chat_translation: .*/b names no languages; give --run RUN_DIR"):
        main(tmp_path / "b", [], tmp_path, False, None, [], "chat_translation", "lm-eval", tmp_path / "out", None, "cpu")
