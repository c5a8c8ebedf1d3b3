"""lm-evaluation-harness task files (structures taken from lm-eval's own tasks) and the task runner's known answers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from evaluate_helpers import Bigram, CharTokenizer, hand_nll

from fournil.errors import FournilError
from fournil.evaluate.models import Scorable
from fournil.evaluate.runner import run_task
from fournil.evaluate.tasks import FunctionRef, load_task

# the shapes of lm-eval's french_bench (include of an extension-less template, test_split null, process_docs and
# metrics as !function), xcopa (doc_to_text as !function), arc (Jinja with .index) and belebele (literal choices)
FRENCH_TEMPLATE = "group: french_bench\ntest_split: test\nfewshot_split: valid\nfewshot_config:\n  sampler: first_n\n"
FRENCH_GENQ = """include: "_default_template_yaml"
description: "Quelle question ?"
task: french_bench_fquadv2_genq
dataset_path: json
dataset_kwargs:
  data_files: {valid: genq.jsonl, test: genq.jsonl}
output_type: generate_until
test_split: null
validation_split: test
process_docs: !function utils.process_docs
doc_to_text: "\\nContexte: {{context}}\\n\\nRéponse: {% if answers.text| length > 0 %}{{answers.text[0]}}{% else %}{{['Impossible']}}{% endif %}\\n\\nQuestion:"
doc_to_target: "{{question}}"
generation_kwargs:
  until:
    - "\\n"
metric_list:
  - metric: !function utils.rouge1
    aggregation: !function utils.rouge1_agg
  - metric: !function utils.f1
    aggregation: mean
"""
UTILS = "def process_docs(docs):\n    return [d for d in docs if d['keep']]\n\ndef doc_to_text_et(doc):\n    return doc['premise'] + ' sest'\n"
XCOPA = """group: xcopa
task: xcopa_et
dataset_path: xcopa
dataset_name: et
output_type: multiple_choice
validation_split: validation
test_split: test
doc_to_text: !function utils.doc_to_text_et
doc_to_target: label
doc_to_choice: !function utils.doc_to_choice
metric_list:
  - metric: acc
metadata:
  version: 1.0
"""
ARC = """task: arc_easy
dataset_path: allenai/ai2_arc
output_type: multiple_choice
doc_to_text: "Question: {{question}}\\nAnswer:"
doc_to_target: "{{choices.label.index(answerKey)}}"
doc_to_choice: "{{choices.text}}"
"""
BELEBELE = """"output_type": "multiple_choice"
"test_split": "fra_Latn"
"doc_to_target": "{{['1', '2', '3', '4'].index(correct_answer_num)}}"
"doc_to_text": "P: {{flores_passage}}\\nQ: {{question.strip()}}\\nA: {{mc_answer1}}\\nAnswer:"
"doc_to_choice": ["A", "B", "C", "D"]
"task": "belebele_fra_Latn"
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_lm_eval_task_files_parse_and_render(tmp_path):
    write(tmp_path, "_default_template_yaml", FRENCH_TEMPLATE)
    write(tmp_path, "utils.py", UTILS)
    genq = load_task(str(write(tmp_path, "genq.yaml", FRENCH_GENQ)))
    write(tmp_path, "genq.jsonl", "\n".join(json.dumps(d) for d in [
        {"context": "Le ciel.", "answers": {"text": ["bleu"]}, "question": "Quelle couleur ?", "keep": True},
        {"context": "X", "answers": {"text": []}, "question": "Q", "keep": True},
        {"context": "drop me", "answers": {"text": []}, "question": "Q", "keep": False}]) + "\n{not json\n")
    assert genq.name == "french_bench_fquadv2_genq" and genq.config["group"] == "french_bench"
    assert genq.config["fewshot_config"] == {"sampler": "first_n"} and genq.output_type == "generate_until"
    assert [m["metric"] for m in genq.metrics] == ["rouge1", "f1"]
    docs = genq.test_docs()  # test_split null: the validation split, through process_docs
    assert len(docs) == 2 and genq.skipped_lines == {"malformed JSON": 1}
    assert genq.text(docs[0]) == "\nContexte: Le ciel.\n\nRéponse: bleu\n\nQuestion:"
    assert genq.text(docs[1]).endswith("Réponse: ['Impossible']\n\nQuestion:")
    shots = genq.sample_shots(docs, 1, seed=0)  # first_n, never the document itself
    assert shots == [[docs[1]], [docs[0]]]
    assert genq.prompt(docs[1], shots[1]) == "Quelle question ?" + genq.text(docs[0]) + " Quelle couleur ?\n\n" + genq.text(docs[1])

    xcopa = load_task(str(write(tmp_path, "xcopa.yaml", XCOPA)))
    assert isinstance(xcopa.config["doc_to_choice"], FunctionRef)
    assert xcopa.text({"premise": "Tüdruk"}) == "Tüdruk sest"
    with pytest.raises(FournilError, match="Hugging Face Hub"):
        xcopa.test_docs()

    arc = load_task(str(write(tmp_path, "arc.yaml", ARC)))
    doc = {"question": "Q?", "answerKey": "C", "choices": {"label": ["A", "B", "C"], "text": ["x", "y", "z"]}}
    assert arc.choices(doc) == ["x", "y", "z"] and arc.target(doc) == 2 and arc.text(doc) == "Question: Q?\nAnswer:"

    belebele = load_task(str(write(tmp_path, "belebele.yaml", BELEBELE)))
    doc = {"flores_passage": "P", "question": " Q ", "mc_answer1": "un", "correct_answer_num": "3"}
    assert belebele.choices(doc) == ["A", "B", "C", "D"] and belebele.target(doc) == 2
    assert belebele.text(doc) == "P: P\nQ: Q\nA: un\nAnswer:"


def test_unknown_task_and_bad_output_type_are_user_errors(tmp_path):
    with pytest.raises(FournilError, match="not a shipped task"):
        load_task("no_such_task")
    with pytest.raises(FournilError, match="output_type"):
        load_task(str(write(tmp_path, "t.yaml", "task: t\noutput_type: ranking\n")))


def local_task(folder: Path, config: str, docs: list[dict]) -> Path:
    write(folder, "docs.jsonl", "".join(json.dumps(d) + "\n" for d in docs))
    return write(folder, "task.yaml", "task: t\ndataset_path: json\ndataset_kwargs:\n  data_files: {test: docs.jsonl}\n"
                 "test_split: test\n" + config)


def scorable(table: torch.Tensor) -> Scorable:
    return Scorable(Bigram(table, context_length=64), CharTokenizer(128), 64, 1, None, "test")


def test_multiple_choice_scores_match_hand_computed_log_likelihoods(tmp_path):
    torch.manual_seed(3)
    table = torch.randn(128, 128) * 3
    docs = [{"q": q, "choices": c, "label": g} for q, c, g in [
        ("ab", ["cd", "e", "été"], 0), ("x", ["yyyy", "z"], 1), ("hello", ["world", "w", "éé"], 2), ("k", ["l", "mn"], 0)]]
    task = load_task(str(local_task(tmp_path, "output_type: multiple_choice\ndoc_to_text: q\ndoc_to_choice: choices\ndoc_to_target: label\n", docs)))
    result = run_task(scorable(table), task, num_fewshot=0)
    tok = CharTokenizer(128)
    expected = {"acc": [], "acc_norm": [], "acc_bytes": []}
    for doc in docs:
        ll = [-hand_nll(table, [1, *tok.encode(doc["q"]).ids, *tok.encode(" " + c).ids]) + hand_nll(table, [1, *tok.encode(doc["q"]).ids])
              for c in doc["choices"]]
        for name, size in (("acc", lambda c: 1), ("acc_norm", len), ("acc_bytes", lambda c: len(c.encode()))):
            scores = [v / size(c) for v, c in zip(ll, doc["choices"])]
            expected[name].append(float(scores.index(max(scores)) == doc["label"]))
    for name, values in expected.items():
        assert result["metrics"][name]["value"] == pytest.approx(sum(values) / len(values)), name
        assert result["metrics"][name]["examples"] == 4
    assert result["metrics"]["chance"] == pytest.approx((1 / 3 + 1 / 2 + 1 / 3 + 1 / 2) / 4)


def test_generate_until_stops_at_the_stop_string_and_scores(tmp_path):
    table = torch.zeros(128, 128)
    for a, b in [(":", " "), (" ", "o"), ("o", "k"), ("k", "\n"), ("\n", "z")]:
        table[ord(a), ord(b)] = 20.0
    docs = [{"q": "Q:", "a": "ok"}, {"q": "R:", "a": "no"}]
    config = ("output_type: generate_until\ndoc_to_text: q\ndoc_to_target: a\ngeneration_kwargs: {until: [\"\\n\"], max_gen_toks: 10}\n"
              "metric_list: [{metric: exact_match}, {metric: chrf}, {metric: rouge}]\n")
    result = run_task(scorable(table), load_task(str(local_task(tmp_path, config, docs))), num_fewshot=0)
    assert [s["output"] for s in result["samples"]] == ["ok", "ok"]
    m = result["metrics"]
    assert m["exact_match"]["value"] == 0.5 and m["exact_match"]["stderr"] == pytest.approx(0.5)
    assert m["rouge1"]["value"] == 0.5 and "rougeL" in m
    assert 0 < m["chrf"]["value"] < 100


def test_loglikelihood_task(tmp_path):
    torch.manual_seed(1)
    table = torch.randn(128, 128)
    docs = [{"q": "ab", "a": "c"}, {"q": "d", "a": "ef"}]
    task = load_task(str(local_task(tmp_path, "output_type: loglikelihood\ndoc_to_text: q\ndoc_to_target: a\n", docs)))
    result = run_task(scorable(table), task, num_fewshot=0)
    ll = [hand_nll(table, [1, ord("a"), ord("b")]) - hand_nll(table, [1, ord("a"), ord("b"), 32, ord("c")]),
          hand_nll(table, [1, ord("d")]) - hand_nll(table, [1, ord("d"), 32, ord("e"), ord("f")])]
    assert result["metrics"]["perplexity"]["value"] == pytest.approx(math.exp(-sum(ll) / 2), rel=1e-5)


def test_shipped_tasks_are_package_data_so_any_install_has_them():
    import fnmatch
    import tomllib

    import fournil
    from fournil.evaluate.tasks import SHIPPED_DIR, load_task

    package = Path(fournil.__file__).parent
    patterns = tomllib.loads((package.parents[1] / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["fournil"]
    files = sorted(p for p in SHIPPED_DIR.iterdir() if p.is_file())
    assert SHIPPED_DIR.is_relative_to(package) and len(files) == 46 and SHIPPED_DIR / "local_data.py" in files
    unshipped = [p.name for p in files if not any(fnmatch.fnmatch(str(p.relative_to(package)), g) for g in patterns)]
    assert unshipped == []
    assert load_task("continuation_fr").name == "continuation_fr"
