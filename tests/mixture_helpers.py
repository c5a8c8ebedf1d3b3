"""A fake run folder for mixture tests: a small curated corpus, a small byte-level BPE, manifests."""

from __future__ import annotations

import json
import random
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from fournil.corpus.documents import write_documents
from fournil.recipe import parse_recipe
from fournil.runs import run_stage

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"]
WORDS = {
    "fr": "le la les un une de du des et est dans pour avec sur paquet fichier système commande".split(),
    "en": "the a an of and is in for with on package file system command install user".split(),
    "de": "der die das und ist mit für auf Paket Datei System Befehl".split(),
}
# documents per (lang, source), words per document
GROUPS = {("fr", "fr-wiki"): (120, 40), ("fr", "fr-news"): (60, 30), ("en", "en-wiki"): (150, 40), ("de", "de-tiny"): (1, 5)}


def text(rng: random.Random, lang: str, words: int) -> str:
    return " ".join(rng.choice(WORDS[lang]) for _ in range(words)) + "."


def documents(lang: str, source: str, n: int, words: int, seed: int = 0) -> list[dict]:
    rng = random.Random(f"{seed}{lang}{source}")
    return [{"id": f"{source}-{i}", "text": text(rng, lang, words), "lang": lang, "source": source,
             "category": "news" if source.endswith("news") else "web", "license": "CC0-1.0"} for i in range(n)]


def train_tokenizer(folder: Path, texts: list[str], vocab_size: int = 400) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    config = {"bos_token": SPECIALS[0], "eos_token": SPECIALS[1], "pad_token": SPECIALS[2],
              "added_tokens_decoder": {str(i): {"content": t, "special": True} for i, t in enumerate(SPECIALS)}}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    (folder / "manifest.json").write_text(json.dumps({"fingerprint": "tok", "figures": {}}))
    return tokenizer


def build_run(root: Path, groups: dict = GROUPS, parallel_rows: int = 0, files: int = 1, name: str = "run") -> Path:
    """A run folder with corpus/ and tokenizer/ as the earlier stages would leave them, each group's
    documents in `files` corpus files (the same tokenizer whatever `files`); returns it."""
    run_dir = root / name
    corpus = run_dir / "corpus"
    texts = []
    for (lang, source), (n, words) in groups.items():
        docs = documents(lang, source, n, words)
        for k in range(files):
            write_documents(corpus / "train" / lang / source / f"{k:05d}.jsonl.zst", docs[k * n // files:(k + 1) * n // files])
        texts += [d["text"] for d in docs]
    (corpus / "manifest.json").write_text(json.dumps({"fingerprint": "corpus", "figures": {}}))
    train_tokenizer(run_dir / "tokenizer", texts)
    if parallel_rows:
        rng = random.Random(7)
        lines = ["source\tdoc\ten\tfr"] + [f"s\td{i}\t{text(rng, 'en', 8)}\t{text(rng, 'fr', 8)}" for i in range(parallel_rows)]
        lines.append("s\tbroken\tonly english")  # a malformed row: skipped and counted
        (root / "pairs.tsv").write_text("\n".join(lines) + "\n")
    return run_dir


def recipe(root: Path, languages: dict | None = None, parallel: bool = False, **sections):
    languages = languages or {"fr": 0.5, "en": 0.5}
    sample = str(SAMPLE / "en" / "maint-guide.jsonl.zst")  # any existing file: mixture reads corpus/, not sources
    sources = [{"name": s, "path": sample, "lang": lang, "license": "CC0-1.0", "category": "news" if s.endswith("news") else "web"}
               for lang, s in GROUPS if lang in languages]
    data = {"name": "mix", "seed": 3, "languages": languages, "sources": sources, **sections}
    if parallel:
        data["parallel"] = [{"name": "pairs", "path": str(root / "pairs.tsv"), "langs": ["en", "fr"], "license": "CC0-1.0"}]
    return parse_recipe(data, root)


def run_mixture(root: Path, recipe_, run_dir: Path) -> dict:
    return run_stage(recipe_, run_dir, "mixture", force=True, log=lambda message: None)
