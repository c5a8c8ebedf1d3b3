"""Corpus curation throughput: fournil's steps and whole stage next to datatrove's stock FineWeb-style pipeline.

    python benchmarks/corpus.py                      # fr+en of the shipped sample
    python benchmarks/corpus.py --langs fr,en,de,es,it,pt --root ../shared/corpus

Prints, per step, documents/s and MB/s per core (CPU time of this process, so other users of
the machine skew it less; wall time beside it), for fournil's steps, fournil's whole stage (one worker, both passes,
writing included), and the stock datatrove steps on the same documents in the same run: a
document-level language filter, GopherRepetitionFilter, GopherQualityFilter, FineWebQualityFilter
and the four MinHash stages. Two substitutions, both in the stock pipeline's favour: its language
filter is py3langid on the whole document (datatrove's fastText models must be downloaded), and its
word tokenizer is a white-space split (datatrove's needs spaCy, which is slower). Its MinHash uses
sha1 shingle hashes, since datatrove 0.10's xxhash path fails with xxhash 4.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import json
import tempfile
import time
from pathlib import Path

import zstandard

ROOT = Path(__file__).resolve().parents[1]


def cpu() -> float:
    return time.process_time()


def wall() -> float:
    return time.perf_counter()


def load(root: Path, langs: list[str]) -> list[dict]:
    docs = []
    for lang in langs:
        for path in sorted((root / lang).glob("*.jsonl.zst")):
            with open(path, "rb") as f:
                for line in io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f), encoding="utf-8"):
                    docs.append({**json.loads(line), "lang": lang, "source": path.name.split(".")[0]})
    return docs


def row(name: str, docs: int, chars_mb: float, seconds: float, wall_seconds: float) -> str:
    return (f"  {name:<28} {docs / seconds:>10,.0f} docs/s {chars_mb / seconds:>8.2f} MB/s   "
            f"({docs} docs, {chars_mb:.1f} MB, {seconds:.2f} s CPU, {wall_seconds:.2f} s wall)")



def timed_steps(steps, documents: list) -> tuple[list, float, float]:
    """Run documents through steps one after the other, printing each step's CPU and wall time; return the survivors and the totals."""
    total = total_wall = 0.0
    for step in steps:
        size, mb = len(documents), megabytes(documents)
        t, w = cpu(), wall()
        documents = list(step.run(iter(documents)))
        seconds, wall_seconds = cpu() - t, wall() - w
        total += seconds
        total_wall += wall_seconds
        print(row(step.name, size, mb, seconds, wall_seconds))
    return documents, total, total_wall

def megabytes(docs) -> float:
    return sum(len(d.text.encode("utf-8")) for d in docs) / 1e6


def fournil_steps(docs: list[dict], langs: list[str], eval_sets: list[str]) -> tuple[float, float]:
    from datatrove.data import Document

    from fournil.corpus.config import CorpusConfig
    from fournil.corpus.dedup import MinHasher, exact_key
    from fournil.corpus.ledger import Ledger
    from fournil.corpus.steps import Decontaminate, LanguageID, Normalise, QualityFilter, ScrubPII

    cfg = CorpusConfig()
    ledger = Ledger()
    current = [Document(text=d["text"], id=d["id"], metadata={"lang": d["lang"], "source": d["source"], "priority": 0}) for d in docs]
    steps = [Normalise(ledger), LanguageID(langs, cfg.langid.model_dump(), {l: cfg.langid.min_score for l in langs}, ledger),
             QualityFilter(None, ledger), ScrubPII(ledger), Decontaminate(eval_sets, cfg.decontaminate_ngram, ledger)]
    print("fournil, per step")
    current, total, total_wall = timed_steps(steps, current)
    size, mb = len(current), megabytes(current)
    t, w = cpu(), wall()
    keys = {exact_key(d.text) for d in current}
    seconds, wall_seconds = cpu() - t, wall() - w
    total += seconds
    total_wall += wall_seconds
    print(row("dedup_exact", size, mb, seconds, wall_seconds))
    hasher = MinHasher(cfg.dedup.ngram, cfg.dedup.buckets, cfg.dedup.hashes_per_bucket, False, 0)
    t, w = cpu(), wall()
    for d in current:
        hasher.band_keys(hasher.signature(d.text))
    seconds, wall_seconds = cpu() - t, wall() - w
    total += seconds
    total_wall += wall_seconds
    print(row("dedup_minhash (signatures)", size, mb, seconds, wall_seconds))
    del keys
    return total, total_wall


def fournil_stage(root: Path, langs: list[str], eval_sets: list[str], docs: int, mb: float) -> tuple[float, float]:
    import resource

    from fournil.recipe import parse_recipe
    from fournil.runs import run_stage

    sources = [{"name": f"{lang}-{p.name.split('.')[0]}", "path": str(p), "lang": lang, "license": "see SOURCES.md"}
               for lang in langs for p in sorted((root / lang).glob("*.jsonl.zst"))]
    recipe = parse_recipe({"name": "bench", "languages": {l: 1 / len(langs) for l in langs}, "sources": sources,
                           "corpus": {"workers": 1, "tasks": 1, "decontaminate": eval_sets}}, ROOT)
    def used() -> float:  # this process and any worker it waited for
        return sum(u.ru_utime + u.ru_stime for u in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))

    with tempfile.TemporaryDirectory() as tmp:
        before, w = used(), wall()
        run_stage(recipe, Path(tmp), "corpus", log=lambda m: None)
        seconds, wall_seconds = used() - before, wall() - w
    print("fournil, whole stage (1 worker: read, both passes, write)")
    print(row("fournil pipeline", docs, mb, seconds, wall_seconds))
    return seconds, wall_seconds


def stock(docs: list[dict], langs: list[str]) -> tuple[float, float]:
    import datatrove.utils.word_tokenizers as word_tokenizers
    from datatrove.data import Document
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                                  MinhashDedupFilter, MinhashDedupSignature)
    from datatrove.pipeline.filters import FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter
    from datatrove.pipeline.filters.base_filter import BaseFilter

    class WhiteSpace:
        def word_tokenize(self, text: str, **_) -> list[str]:
            return text.split()

    word_tokenizers.load_word_tokenizer = lambda language: WhiteSpace()
    import datatrove.pipeline.dedup.minhash as minhash_module
    minhash_module.load_word_tokenizer = word_tokenizers.load_word_tokenizer

    class DocLanguage(BaseFilter):
        name = "language (py3langid, document)"

        def __init__(self, languages):
            super().__init__()
            import py3langid.langid as langid
            self.model = langid.LanguageIdentifier.from_model_file(langid.MODEL_FILE, norm_probs=True)
            self.model.set_languages(languages)

        def filter(self, doc):
            lang, score = self.model.classify(doc.text)
            doc.metadata["language"] = lang
            return score >= 0.65

    current = [Document(text=d["text"], id=d["id"], metadata={"lang": d["lang"]}) for d in docs]
    print("datatrove stock, per step (English defaults, as shipped), with three offline substitutions:")
    print("  language filter = py3langid on the whole document, threshold 0.65 (stock: fastText lid.176, a download);")
    print("  word tokenizer = white-space split (stock: spaCy/NLTK per language, slower); MinHash shingles hashed with sha1")
    print("  (stock default xxhash fails in datatrove 0.10 with xxhash 4). No PII, decontamination, reading or writing.")
    current, total, total_wall = timed_steps((DocLanguage(langs), GopherRepetitionFilter(), GopherQualityFilter(), FineWebQualityFilter()), current)
    from datatrove.utils.hashing import HashConfig

    config = MinhashConfig(hash_config=HashConfig(hash_fc="sha1"))  # datatrove 0.10's xxhash path passes str, which xxhash 4 refuses
    size, mb = len(current), megabytes(current)
    with tempfile.TemporaryDirectory() as tmp:
        stages = [
            [lambda data, rank, world_size: iter(current), MinhashDedupSignature(f"{tmp}/sigs", config=config)],
            [MinhashDedupBuckets(f"{tmp}/sigs", f"{tmp}/buckets", config=config)],
            [MinhashDedupCluster(f"{tmp}/buckets", f"{tmp}/remove", config=config)],
            [lambda data, rank, world_size: iter(current), MinhashDedupFilter(f"{tmp}/remove")],
        ]
        t, w = cpu(), wall()
        with open(os.devnull, "w") as quiet, contextlib.redirect_stderr(quiet):  # datatrove's task logs
            for i, pipeline in enumerate(stages):
                tasks = config.num_buckets if i == 1 else 1
                LocalPipelineExecutor(pipeline, tasks=tasks, workers=1, logging_dir=f"{tmp}/logs{i}").run()
        seconds, wall_seconds = cpu() - t, wall() - w
    total += seconds
    total_wall += wall_seconds
    print(row("minhash (4 stages)", size, mb, seconds, wall_seconds))
    return total, total_wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT / "data" / "sample")
    parser.add_argument("--langs", default="fr,en")
    args = parser.parse_args()
    from datatrove.utils.logging import logger
    logger.remove()
    langs = args.langs.split(",")
    eval_sets = [str(ROOT / "data" / "sample" / "parallel" / "en-fr.test.tsv")]
    docs = load(args.root, langs)
    mb = sum(len(d["text"].encode("utf-8")) for d in docs) / 1e6
    print(f"input: {args.root} {langs}: {len(docs)} documents, {mb:.1f} MB of text")
    print(row("sum of fournil steps", len(docs), mb, *fournil_steps(docs, langs, eval_sets)))
    stage_seconds, stage_wall = fournil_stage(args.root, langs, eval_sets, len(docs), mb)
    stock_seconds, stock_wall = stock(docs, langs)
    print(row("sum of stock steps", len(docs), mb, stock_seconds, stock_wall))
    print(f"fournil whole stage vs stock pipeline: {stock_seconds / stage_seconds:.2f}x the throughput "
          f"({mb / stage_seconds:.2f} vs {mb / stock_seconds:.2f} MB/s per core)")


if __name__ == "__main__":
    main()
