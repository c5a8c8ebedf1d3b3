"""Build the shipped offline tasks (src/fournil/evaluate/shipped/) in en, fr, de, es, it and pt.

`python -m fournil.evaluate.build_tasks --corpus ../shared/corpus [--sample data/sample] [--out src/fournil/evaluate/shipped]`

Material: the aligned en–xx pairs of the raw Debian corpus (`parallel/en-xx.tsv.zst`, the corpus
that data/sample/ is cut from), taken only from documents outside the shipped sample and outside the
training pairs (`data/sample/parallel/*.train.tsv`), and only when neither side occurs in that training
text (`fournil.evaluate.overlap`: no run of min(L, 13) words in common). A pair is kept when both
sides read as a sentence (capital first, `.`/`!`/`?` last, 4–40 words), differ, and py3langid names
their languages. The pool of each language is ordered by a hash of the pair, so a rebuild gives the
same files. From it:

- translation_en_xx / translation_xx_en (generate_until, chrF and BLEU, 3-shot): the first 400
  pairs; every 20th is a few-shot example, the others the test split.
- continuation_<lang> (multiple_choice, acc, chance 25%): each sentence of those pairs with at least
  8 words cut after half its words; the true second half against 3 from other documents
  (English: the English side of the en–fr pairs).
- minimal_pairs_<lang> (multiple_choice, acc, chance 50%): a held-out sentence against the same
  sentence made wrong by one rule of `fournil.evaluate.minimal_pairs`, up to 60 per rule, each
  sentence used once; the model should find the right one more likely.

The same run writes shipped/DATASHEET.md: sources, licences and counts per task and rule.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
from collections import Counter
from pathlib import Path

import yaml

from fournil.corpus.documents import read_documents
from fournil.evaluate.minimal_pairs import RULES
from fournil.evaluate.overlap import TrainingText

ROOT = Path(__file__).resolve().parents[3]
SEED = 20240611
PAIRED = ("fr", "de", "es", "it", "pt")  # each paired with English
LANGUAGES = ("en", *PAIRED)
LANGUAGE_NAMES = {"en": "English", "fr": "French", "de": "German", "es": "Spanish", "it": "Italian", "pt": "Portuguese"}
TRANSLATION_PAIRS = 400
FEWSHOT_EVERY = 20
MIN_WORDS, MAX_WORDS = 4, 40
CONTINUATION_MIN_WORDS = 8
DISTRACTORS = 3
PER_RULE = 60
EXCLUDED_SOURCES = {"fortunes": "unclear licence", "bible": "the Spanish side is the 1602 spelling (á for a), not today's"}
LICENCES = {  # from the raw corpus's SOURCES.md
    "wesnoth": "GPL-2.0-or-later", "debian-handbook": "GPL-2.0-or-later OR CC-BY-SA-3.0", "debian-reference": "GPL-2.0-or-later",
    "installation-guide": "GPL-2.0-only", "maint-guide": "GPL-2.0-or-later", "developers-reference": "GPL-2.0-or-later",
    "gnome-user-docs": "CC-BY-SA-3.0", "libreoffice-help": "MPL-2.0", "gimp-help": "GFDL-1.2-or-later",
    "manpages": "GPL-3.0-or-later",
}
WORD = re.compile(r"\w+")


def _unit(text: str) -> str:
    return hashlib.sha256(f"{SEED}:{text}".encode()).hexdigest()


def _is_sentence(text: str) -> bool:
    return bool(text) and text[0].isupper() and text[-1] in ".!?" and MIN_WORDS <= len(text.split()) <= MAX_WORDS and "$" not in text


def read_tsv_rows(path: Path) -> list[list[str]]:
    import zstandard

    with open(path, "rb") as raw:
        text = zstandard.ZstdDecompressor().stream_reader(raw).read().decode("utf-8")
    return [line.split("\t") for line in text.splitlines()[1:]]


def training_material(sample: Path) -> tuple[set[str], list[str], dict[str, set[str]]]:
    """Document keys, texts and per-language words of everything fournil ships for training."""
    keys, texts, words = set(), [], {lang: set() for lang in LANGUAGES}
    for path in sorted(sample.glob("*/*.jsonl.zst")):
        for doc in read_documents(path):
            keys.add(doc["id"].split("#")[0])
            texts.append(doc["text"])
            if path.parent.name in words:
                words[path.parent.name].update(w.lower() for w in WORD.findall(doc["text"]))
    for path in sorted((sample / "parallel").glob("*.train.tsv")):
        for row in (line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()[1:]):
            keys.add(f"{row[0]}/{row[1]}")
            texts.extend(row[2:])
    return keys, texts, words


def pair_pool(corpus: Path, lang: str, keys: set[str], training: TrainingText, counts: Counter) -> list[dict]:
    """The held-out en–lang pairs, in their fixed order; `counts` gets how many were dropped and why."""
    from fournil.corpus.langid import Py3LangId

    rows = read_tsv_rows(corpus / "parallel" / f"en-{lang}.tsv.zst")
    counts["read"] += len(rows)
    pool, seen = [], set()
    for source, doc, en, xx in (r[:4] for r in rows if len(r) >= 4):
        en, xx = en.strip(), xx.strip()
        reason = (EXCLUDED_SOURCES.get(source) and "excluded source" or f"{source}/{doc}" in keys and "document in the training text"
                  or not (_is_sentence(en) and _is_sentence(xx)) and "not a sentence of 4-40 words" or en == xx and "untranslated"
                  or (en, xx) in seen and "duplicate")
        if reason:
            counts[reason] += 1
            continue
        seen.add((en, xx))
        pool.append({"source": source, "doc": doc, "en": en, lang: xx})
    identifier = Py3LangId(list(LANGUAGES))
    for side in ("en", lang):
        probabilities = identifier.probabilities([p[side] for p in pool])
        named = [identifier.labels[i] for i in probabilities.argmax(axis=1)] if len(pool) else []
        counts["other language (py3langid)"] += sum(n != side for n in named)
        pool = [p for p, n in zip(pool, named) if n == side]
    found = training.found([p["en"] for p in pool] + [p[lang] for p in pool])
    kept = [p for i, p in enumerate(pool) if not found[i] and not found[len(pool) + i]]
    counts["occurs in the training text"] += len(pool) - len(kept)
    counts["kept"] += len(kept)
    return sorted(kept, key=lambda p: _unit(f"{lang}\t{p['en']}\t{p[lang]}"))


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def _write_yaml(path: Path, config: dict) -> None:
    """The task file; lm-eval loads its data through local_data.py beside it, so it runs from any working folder."""
    header = "# Built by `python -m fournil.evaluate.build_tasks` (see docs/evaluate.md); lm-evaluation-harness task format.\n"
    loader = "custom_dataset: !function local_data.load\n"
    path.write_text(header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=200) + loader, encoding="utf-8")


def _sources(rows: list[dict]) -> dict[str, int]:
    return dict(sorted(Counter(r["source"] for r in rows).items()))


def translation_tasks(lang: str, pairs: list[dict], out: Path) -> dict[str, dict]:
    fewshot = [p for i, p in enumerate(pairs) if i % FEWSHOT_EVERY == 0]
    test = [p for i, p in enumerate(pairs) if i % FEWSHOT_EVERY != 0]
    stem = f"parallel_en_{lang}"
    _write_jsonl(out / f"{stem}.fewshot.jsonl", fewshot)
    _write_jsonl(out / f"{stem}.test.jsonl", test)
    tasks = {}
    for src, tgt in (("en", lang), (lang, "en")):
        name = f"translation_{src}_{tgt}"
        _write_yaml(out / f"{name}.yaml", {
            "task": name,
            "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"train": f"{stem}.fewshot.jsonl", "test": f"{stem}.test.jsonl"}},
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
            "metadata": {"version": 2, "languages": [src, tgt],
                         "source": f"held-out en-{lang} pairs of the Debian corpus: {len(test)} test, {len(fewshot)} few-shot"},
        })
        tasks[name] = {"examples": len(test), "sources": _sources(test)}
    return tasks


def continuation_rows(sentences: list[dict], rnd: random.Random) -> list[dict]:
    """{context, choices, label, source, doc}: a sentence's first half and four second halves, one its own."""
    halves = []
    for s in sentences:
        words = s["text"].split()
        if len(words) >= CONTINUATION_MIN_WORDS:
            halves.append((s, " ".join(words[:len(words) // 2]), " ".join(words[len(words) // 2:])))
    rows = []
    for s, context, ending in halves:
        others = sorted({e for t, _, e in halves if t["doc"] != s["doc"] and e != ending})
        if len(others) < DISTRACTORS:
            continue
        choices = [ending, *rnd.sample(others, DISTRACTORS)]
        rnd.shuffle(choices)
        rows.append({"context": context, "choices": choices, "label": choices.index(ending), "source": s["source"], "doc": s["doc"]})
    return rows


def continuation_task(lang: str, sentences: list[dict], out: Path) -> dict[str, dict]:
    rnd = random.Random(f"{SEED}-{lang}")
    rows = continuation_rows(sentences, rnd)
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
        "metadata": {"version": 2, "languages": [lang], "chance": 1 / (DISTRACTORS + 1),
                     "source": f"held-out sentences of the Debian corpus ({LANGUAGE_NAMES[lang]}): {len(rows)}"},
    })
    return {name: {"examples": len(rows), "sources": _sources(rows)}}


def minimal_pair_rows(lang: str, sentences: list[dict], known: set[str]) -> list[dict]:
    """Up to PER_RULE pairs per rule; each sentence goes to the rule with the fewest pairs so far that applies to it."""
    rules = RULES[lang]
    made: Counter = Counter({name: 0 for name in rules})
    rnd = random.Random(f"{SEED}-minimal-{lang}")
    rows = []
    for s in sentences:
        for name in sorted(rules, key=lambda r: (made[r], list(rules).index(r))):
            if made[name] >= PER_RULE:
                continue
            edit = rules[name](s["text"], known)
            if edit is None:
                continue
            good, bad = s["text"], edit.apply(s["text"])
            if bad == good:
                continue
            label = rnd.randrange(2)  # the right sentence's place is drawn, so a model that ties both is at chance
            choices = [good, bad] if label == 0 else [bad, good]
            rows.append({"choices": choices, "label": label, "rule": name, "good": good, "bad": bad,
                         "edit": {"start": edit.start, "end": edit.end, "old": good[edit.start:edit.end], "new": edit.new},
                         "source": s["source"], "doc": s["doc"]})
            made[name] += 1
            break
        if all(made[r] >= PER_RULE for r in rules):
            break
    return rows


def minimal_pairs_task(lang: str, sentences: list[dict], known: set[str], out: Path) -> dict[str, dict]:
    rows = minimal_pair_rows(lang, sentences, known)
    name = f"minimal_pairs_{lang}"
    _write_jsonl(out / f"{name}.jsonl", rows)
    _write_yaml(out / f"{name}.yaml", {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": f"{name}.jsonl"}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "",
        "doc_to_choice": "choices",
        "doc_to_target": "label",
        "target_delimiter": "",
        "num_fewshot": 0,
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1, "languages": [lang], "chance": 0.5,
                     "rules": dict(sorted(Counter(r["rule"] for r in rows).items())),
                     "source": f"held-out sentences of the Debian corpus ({LANGUAGE_NAMES[lang]}) and a rule each: {len(rows)} pairs"},
    })
    return {name: {"examples": len(rows), "sources": _sources(rows), "rules": dict(Counter(r["rule"] for r in rows))}}


def build(corpus: Path, sample: Path, out: Path, log=print) -> dict[str, dict]:
    """Write every task; return {task: {examples, sources[, rules]}} and the pool accounting under "_pools"."""
    out.mkdir(parents=True, exist_ok=True)
    keys, texts, words = training_material(sample)
    training = TrainingText(texts)
    built: dict[str, dict] = {}
    pools: dict[str, dict] = {}
    en_sentences: list[dict] = []
    for lang in PAIRED:
        counts: Counter = Counter()
        pool = pair_pool(corpus, lang, keys, training, counts)
        pools[lang] = dict(counts)
        log(f"en-{lang}: {counts['read']:,} pairs read, {len(pool):,} held out and clean")
        translation = pool[:TRANSLATION_PAIRS]
        built.update(translation_tasks(lang, translation, out))
        sentences = [{"text": p[lang], "source": p["source"], "doc": p["doc"]} for p in pool]
        built.update(continuation_task(lang, sentences[:TRANSLATION_PAIRS], out))
        built.update(minimal_pairs_task(lang, sentences, words[lang], out))
        if lang == "fr":
            en_sentences = [{"text": p["en"], "source": p["source"], "doc": p["doc"]} for p in pool]
    built.update(continuation_task("en", en_sentences[:TRANSLATION_PAIRS], out))
    built.update(minimal_pairs_task("en", en_sentences, words["en"], out))
    (out / "DATASHEET.md").write_text(datasheet(built, pools), encoding="utf-8")
    return {**dict(sorted(built.items())), "_pools": pools}


def datasheet(built: dict[str, dict], pools: dict[str, dict]) -> str:
    """The shipped tasks' datasheet; every figure is computed by the build."""
    from fournil.evaluate import minimal_pairs

    sources = sorted({s for t in built.values() for s in t["sources"]})
    lines = ["# Datasheet: fournil's shipped evaluation tasks", "",
             "Written by `python -m fournil.evaluate.build_tasks` (see its docstring and docs/evaluate.md); every figure is computed.", "",
             "## Material", "",
             "Aligned sentence pairs of the raw Debian corpus that `data/sample/` is cut from (`parallel/en-xx.tsv.zst`), from",
             "documents **outside** the shipped sample and the shipped training pairs, with neither side sharing a run of",
             "min(L, 13) words with that training text (`fournil.evaluate.overlap`; checked again by `tests/test_evaluate_shipped.py`).",
             f"Excluded sources: {'; '.join(f'{k} ({v})' for k, v in EXCLUDED_SOURCES.items())}.", "",
             "| pairs | read | " + " | ".join(sorted({k for p in pools.values() for k in p} - {"read", "kept"})) + " | kept |",
             "|---|" + "---:|" * (len({k for p in pools.values() for k in p} - {"read", "kept"}) + 2)]
    reasons = sorted({k for p in pools.values() for k in p} - {"read", "kept"})
    for lang, counts in pools.items():
        lines.append(f"| en-{lang} | {counts.get('read', 0):,} | " + " | ".join(f"{counts.get(r, 0):,}" for r in reasons)
                     + f" | {counts.get('kept', 0):,} |")
    lines += ["", "## Tasks and their sources", "",
              "| task | examples | " + " | ".join(sources) + " |", "|---|---:|" + "---:|" * len(sources)]
    for name, task in built.items():
        lines.append(f"| {name} | {task['examples']:,} | " + " | ".join(f"{task['sources'].get(s, 0):,}" for s in sources) + " |")
    lines += ["", "## Licences", "", "Each example keeps its `source` and `doc`; copyright stays with the authors and translators.", "",
              "| source | licence |", "|---|---|"] + [f"| {s} | {LICENCES.get(s, 'see ../shared/corpus/SOURCES.md')} |" for s in sources]
    rules = sorted({r for t in built.values() for r in t.get("rules", {})})
    lines += ["", "## Minimal-pair rules", "", minimal_pairs.__doc__.split("\n\n", 1)[1].strip(), "",
              "| language | " + " | ".join(rules) + " | total |", "|---|" + "---:|" * (len(rules) + 1)]
    for lang in LANGUAGES:
        task = built[f"minimal_pairs_{lang}"]
        lines.append(f"| {lang} | " + " | ".join(f"{task['rules'].get(r, 0) or '–'}" for r in rules) + f" | {task['examples']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True, help="the raw corpus folder (holds parallel/en-xx.tsv.zst)")
    parser.add_argument("--sample", type=Path, default=ROOT / "data" / "sample", help="the shipped training text to keep out")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "shipped")
    args = parser.parse_args()
    built = build(args.corpus, args.sample, args.out)
    for name, task in built.items():
        if not name.startswith("_"):
            print(f"{args.out / name}.yaml: {task['examples']} examples")


if __name__ == "__main__":
    main()
