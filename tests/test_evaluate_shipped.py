"""The shipped tasks in six languages: minimal-pair rules, labels checked by a planted model, no training overlap."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from evaluate_helpers import Bigram

from fournil.evaluate.build_tasks import LANGUAGES, training_material
from fournil.evaluate.config import SHIPPED_TASKS
from fournil.evaluate.minimal_pairs import RULES
from fournil.evaluate.models import Scorable
from fournil.evaluate.overlap import TrainingText
from fournil.evaluate.runner import run_task
from fournil.evaluate.tasks import SHIPPED_DIR, load_task

ROOT = Path(__file__).resolve().parents[1]


def rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (SHIPPED_DIR / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]


# (language, rule, right sentence, wrong sentence or None where the rule must not apply)
CASES = [
    ("en", "number", "The file is open.", "The file are open."),
    ("en", "article", "Pick an image or a layer.", "Pick a image or a layer."),
    ("en", "word_order", "Close the window.", "Close window the."),
    ("en", "word_order", "The window closes.", "Window the closes."),
    ("fr", "elision", "Ouvrez l'image.", "Ouvrez le image."),
    ("fr", "elision", "Aujourd'hui, il pleut.", None),
    ("fr", "contraction", "Le nom du fichier.", "Le nom de le fichier."),
    ("fr", "gender", "Ouvrez une fenêtre.", "Ouvrez un fenêtre."),
    ("fr", "gender", "Vous la trouverez ici.", None),  # `la` is a pronoun there
    ("fr", "gender", "Pour le modifier, cliquez.", None),  # before an infinitive too
    ("fr", "number", "Le fichier est ouvert.", "Le fichier sont ouvert."),
    ("fr", "accent", "Sélectionnez où.", "Selectionnez où."),
    ("de", "gender", "Öffnen Sie die Datei.", "Öffnen Sie das Datei."),
    ("de", "number", "Die Datei ist offen.", "Die Datei sind offen."),
    ("de", "number", "Dann ist sie offen.", None),  # `sie ist` and `sie sind` are both German
    ("de", "noun_case", "Öffnen Sie die Datei.", "Öffnen Sie die datei."),
    ("de", "accent", "Wählen Sie eine Farbe.", "Wahlen Sie eine Farbe."),
    ("es", "contraction", "El nombre del archivo.", "El nombre de el archivo."),
    ("es", "gender", "Abra el archivo.", "Abra la archivo."),
    ("es", "number", "Abra los archivos.", "Abra el archivos."),
    ("es", "accent", "Pulse también aquí.", "Pulse tambien aquí."),
    ("it", "elision", "Apri l'immagine.", "Apri lo immagine."),
    ("it", "contraction", "Il nome del file.", "Il nome di il file."),
    ("it", "gender", "Apri il documento.", "Apri la documento."),
    ("it", "number", "Apri i livelli.", "Apri il livelli."),
    ("pt", "contraction", "O nome do arquivo.", "O nome de o arquivo."),
    ("pt", "gender", "Abra um arquivo.", "Abra uma arquivo."),
    ("pt", "number", "Abra os arquivos.", "Abra o arquivos."),
    ("pt", "word_order", "Abra o arquivo.", "Abra arquivo o."),
]


@pytest.mark.parametrize("lang,rule,right,wrong", CASES)
def test_each_rule_makes_the_wrong_sentence_it_says(lang, rule, right, wrong):
    edit = RULES[lang][rule](right, {"ou"})  # a known word: `où` is never made into `ou`
    if wrong is None:
        assert edit is None
        return
    assert edit.rule == rule and edit.apply(right) == wrong


def test_accent_rule_leaves_a_word_whose_plain_form_is_a_word():
    assert RULES["es"]["accent"]("Esta está.", {"esta"}) is None


def test_every_shipped_pair_differs_only_where_its_rule_says():
    for lang in LANGUAGES:
        pairs = rows(f"minimal_pairs_{lang}")
        assert {p["rule"] for p in pairs} == set(RULES[lang]), "every rule of the language has pairs"
        for p in pairs:
            good, bad, edit = p["good"], p["bad"], p["edit"]
            start, end = edit["start"], edit["end"]
            assert good[start:end] == edit["old"] and good[:start] == bad[:start] and bad[start:start + len(edit["new"])] == edit["new"]
            assert good[end:] == bad[start + len(edit["new"]):] and good != bad
            assert p["choices"][p["label"]] == good and p["choices"][1 - p["label"]] == bad
            if p["rule"] != "accent":  # the accent rule also reads the training vocabulary
                again = RULES[lang][p["rule"]](good, set())
                assert (again.start, again.end, again.new) == (start, end, edit["new"])


class PlantedTokenizer:
    """One token per character: 1 for the characters of a text ending in a preferred string, else 2."""

    def __init__(self, preferred: set[str]) -> None:
        self.preferred = preferred

    def encode(self, text: str, add_special_tokens: bool = False):
        tail = next((len(p) for p in self.preferred if text.endswith(p)), 0)
        return type("Encoding", (), {"ids": [2] * (len(text) - tail) + [1] * tail})()

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return ""


def planted(preferred: set[str]) -> Scorable:
    table = torch.full((4, 4), -9.0)
    table[:, 1] = 5.0  # token 1 after anything is likely, token 2 unlikely
    return Scorable(Bigram(table, context_length=512), PlantedTokenizer(preferred), 512, 0, None, "fournil")


@pytest.mark.parametrize("lang", LANGUAGES)
def test_a_model_planted_with_the_answers_scores_them(lang):
    n = 24
    minimal = rows(f"minimal_pairs_{lang}")[:n]
    continuation = rows(f"continuation_{lang}")[:n]
    right = {p["good"] for p in minimal} | {f"{r['context']} {r['choices'][r['label']]}" for r in continuation}
    wrong = {p["bad"] for p in minimal}
    for name in (f"minimal_pairs_{lang}", f"continuation_{lang}"):
        task = load_task(name)
        scores = run_task(planted(right), task, max_examples=n)["metrics"]
        assert scores["acc"]["value"] == 1.0 and scores["acc"]["examples"] == n
        assert scores["chance"] == pytest.approx(task.config["metadata"]["chance"])
    assert run_task(planted(wrong), load_task(f"minimal_pairs_{lang}"), max_examples=n)["metrics"]["acc"]["value"] == 0.0


def test_no_shipped_example_occurs_in_the_shipped_training_text():
    _, texts, _ = training_material(ROOT / "data" / "sample")
    training = TrainingText(texts)
    examples = []
    for lang in LANGUAGES:
        examples += [p["good"] for p in rows(f"minimal_pairs_{lang}")]
        examples += [f"{r['context']} {r['choices'][r['label']]}" for r in rows(f"continuation_{lang}")]
        if lang != "en":
            for split in ("test", "fewshot"):
                examples += [p[side] for p in rows(f"parallel_en_{lang}.{split}") for side in ("en", lang)]
    assert len(examples) > 7_000
    assert not any(training.found(examples))
    assert training.found(texts[:3]) == [True] * 3, "the check finds text that is there"


def test_the_default_task_list_is_every_shipped_task():
    assert sorted(SHIPPED_TASKS) == sorted(p.stem for p in SHIPPED_DIR.glob("*.yaml"))


def test_lm_eval_scores_a_shipped_minimal_pair_task_as_fournil_does(tmp_path):
    pytest.importorskip("lm_eval")
    pytest.importorskip("accelerate")
    import dataclasses

    from evaluate_helpers import make_tokenizer

    from fournil.evaluate.harness import run_harness
    from fournil.evaluate.models import open_model
    from fournil.model.io import save_model
    from fournil.model.llama import Llama
    from fournil.model.presets import PRESETS

    examples = 16
    make_tokenizer(tmp_path / "tokenizer", [p["good"] for p in rows("minimal_pairs_de")[:60]], vocab_size=400)
    torch.manual_seed(0)
    save_model(Llama(dataclasses.replace(PRESETS["tiny"], vocab_size=400)), tmp_path / "final")
    ours = run_task(open_model(tmp_path / "final", tmp_path / "tokenizer"), load_task("minimal_pairs_de"), max_examples=examples)
    theirs = run_harness(tmp_path / "final", ["minimal_pairs_de"], tmp_path / "harness", tmp_path / "tokenizer",
                         limit=examples)["results"]["minimal_pairs_de"]
    assert ours["metrics"]["acc"]["examples"] == examples
    assert theirs["acc,none"] == pytest.approx(ours["metrics"]["acc"]["value"])
    assert theirs["acc_stderr,none"] == pytest.approx(ours["metrics"]["acc"]["stderr"])
