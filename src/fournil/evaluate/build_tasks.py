"""Build the shipped offline tasks (src/fournil/evaluate/shipped/) from the held-out parallel pairs fournil ships.

`python -m fournil.evaluate.build_tasks [--pairs data/sample/parallel/en-fr.test.tsv] [--out src/fournil/evaluate/shipped]`

Source: `en-fr.test.tsv`, 400 English–French sentence pairs taken from documents outside the
shipped sample (so outside any training corpus built from it; the demo recipe also decontaminates
its corpus against this file). Nothing here comes from training documents.

- translation_en_fr / translation_fr_en (generate_until, chrF and BLEU, 3-shot): the pairs, shuffled
  with a fixed seed; every 20th pair is a few-shot example, the others are the test split.
- continuation_<lang> (multiple_choice, acc): each sentence of at least 8 words is cut after its
  first half of words; the model picks the true second half among it and 3 second halves of
  sentences from other documents. Chance is 25%; a model that has learnt the language beats it.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
SEED = 20240611
FEWSHOT_EVERY = 20
MIN_WORDS = 8
DISTRACTORS = 3
LANGUAGE_NAMES = {"en": "English", "fr": "French"}


def read_pairs(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [{"source": r["source"], "doc": r["doc"], "en": r["en"].strip(), "fr": r["fr"].strip()}
            for r in rows if r.get("en", "").strip() and r.get("fr", "").strip()]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def _write_yaml(path: Path, config: dict) -> None:
    header = "# Built by `python -m fournil.evaluate.build_tasks` (see docs/evaluate.md); lm-evaluation-harness task format.\n"
    path.write_text(header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=200), encoding="utf-8")


def translation_tasks(pairs: list[dict], out: Path) -> list[str]:
    pairs = list(pairs)
    random.Random(SEED).shuffle(pairs)
    fewshot = [p for i, p in enumerate(pairs) if i % FEWSHOT_EVERY == 0]
    test = [p for i, p in enumerate(pairs) if i % FEWSHOT_EVERY != 0]
    _write_jsonl(out / "parallel_en_fr.fewshot.jsonl", fewshot)
    _write_jsonl(out / "parallel_en_fr.test.jsonl", test)
    names = []
    for src, tgt in (("en", "fr"), ("fr", "en")):
        name = f"translation_{src}_{tgt}"
        _write_yaml(out / f"{name}.yaml", {
            "task": name,
            "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"train": "parallel_en_fr.fewshot.jsonl", "test": "parallel_en_fr.test.jsonl"}},
            "fewshot_split": "train",
            "test_split": "test",
            "output_type": "generate_until",
            "doc_to_text": f"{LANGUAGE_NAMES[src]}: {{{{{src}}}}}\n{LANGUAGE_NAMES[tgt]}:",
            "doc_to_target": f"{{{{{tgt}}}}}",
            "target_delimiter": " ",
            "fewshot_delimiter": "\n\n",
            "num_fewshot": 3,
            "generation_kwargs": {"until": ["\n"], "max_gen_toks": 64, "do_sample": False},
            "metric_list": [{"metric": "chrf", "aggregation": "chrf", "higher_is_better": True},
                            {"metric": "bleu", "aggregation": "bleu", "higher_is_better": True}],
            "metadata": {"version": 1, "languages": [src, tgt],
                         "source": f"data/sample/parallel/en-fr.test.tsv: {len(test)} test pairs, {len(fewshot)} few-shot pairs"},
        })
        names.append(name)
    return names


def continuation_rows(pairs: list[dict], lang: str, rnd: random.Random) -> list[dict]:
    sentences = [(p["doc"], p[lang].split()) for p in pairs]
    candidates = [(doc, words) for doc, words in sentences if len(words) >= MIN_WORDS]
    halves = [(doc, " ".join(w[:len(w) // 2]), " ".join(w[len(w) // 2:])) for doc, w in candidates]
    rows = []
    for doc, context, ending in halves:
        others = sorted({e for d, _, e in halves if d != doc and e != ending})
        if len(others) < DISTRACTORS:
            continue
        choices = [ending, *rnd.sample(others, DISTRACTORS)]
        rnd.shuffle(choices)
        rows.append({"context": context, "choices": choices, "label": choices.index(ending), "doc": doc})
    return rows


def continuation_tasks(pairs: list[dict], out: Path) -> list[str]:
    names = []
    for lang in ("en", "fr"):
        rnd = random.Random(f"{SEED}-{lang}")
        rows = continuation_rows(pairs, lang, rnd)
        rnd.shuffle(rows)
        name = f"continuation_{lang}"
        _write_jsonl(out / f"{name}.jsonl", rows)
        _write_yaml(out / f"{name}.yaml", {
            "task": name,
            "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"test": f"{name}.jsonl"}},
            "test_split": "test",
            "output_type": "multiple_choice",
            "doc_to_text": "{{context}}",
            "doc_to_choice": "choices",
            "doc_to_target": "label",
            "target_delimiter": " ",
            "num_fewshot": 0,
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}],
            "metadata": {"version": 1, "languages": [lang], "chance": 1 / (DISTRACTORS + 1),
                         "source": f"data/sample/parallel/en-fr.test.tsv ({LANGUAGE_NAMES[lang]} side): {len(rows)} sentences"},
        })
        names.append(name)
    return names


def build(pairs_path: Path, out: Path) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    pairs = read_pairs(pairs_path)
    return translation_tasks(pairs, out) + continuation_tasks(pairs, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=Path, default=ROOT / "data" / "sample" / "parallel" / "en-fr.test.tsv")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "shipped")
    args = parser.parse_args()
    for name in build(args.pairs, args.out):
        print(f"{args.out / name}.yaml")


if __name__ == "__main__":
    main()
