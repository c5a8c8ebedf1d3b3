"""How the corpus and mixture stages grow with their input: time and peak memory at 1×, 2× and 4×.

    python benchmarks/scale.py                       # 1× = 3 MB of text (0.5 MB per language), a few minutes on 2 cores
    python benchmarks/scale.py --base-mb 20 --sizes 1,2,4,8

The input is built from ../shared/corpus (en, fr, de, es, it, pt; every source of each). Each
language's documents are put in one fixed pseudo-random order (xxh3 of language, source and id),
and the input of size s takes the first s × base-mb / 6 MB of text of every language from that
order: the 2× input holds the 1× input plus as many *other* real documents, so deduplication
finds what real text of that size holds, not copies of the 1× input. Only when a language runs
out of documents (from about --base-mb 10 at 4×: Portuguese has 10.5 MB) does the order start
again with copies made distinct by a fixed perturbation: in every line, each pair of adjacent
words is swapped or not by a bit of xxh3(copy, document, line), which changes about four word
5-grams in five, so neither exact nor MinHash dedup pairs a copy with its original or with another
copy. A perturbed copy keeps its words (language ID, stop words, word lengths read about the same)
but not its order, so it measures throughput on text like the original, not what dedup would
find in that much more real text; the header line says how many documents are such copies.

Each stage runs in its own process (`run_stage`, as `fournil run` calls it; the tokenizer stage,
which the mixture needs, is timed but left out of the fit: its sample is the same size at every
input size). Printed per size and stage: wall time, CPU time of the stage's process and of the
workers it waited for, MB/s per core (MB of input text over CPU seconds), and peak RSS of the
largest of those processes (ru_maxrss of the process and of its children). Then the fitted
exponents (least squares of log y on log size) of corpus + mixture CPU time and of peak memory,
raw and less the dedup index. The index (pass 2 of the corpus stage, one process per language)
holds, per document, an exact-dedup entry, one key per LSH band, the union-find slot and a few
per-document lists; its bytes per document are measured here with tracemalloc on those
structures built for real documents (every band key distinct, the worst case), and the index of
the largest language at each size is subtracted from the corpus stage's peak. Targets (issue 20):
time exponent ≤ 1.1, memory exponent ≤ 0.3 without the index. Fixed costs (loading py3langid's
model, starting workers) flatten the fit at small sizes: the exponent at --base-mb 20 says more.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import xxhash
import zstandard

ROOT = Path(__file__).resolve().parents[1]
LANGS = ("en", "fr", "de", "es", "it", "pt")
STAGES = ("corpus", "tokenizer", "mixture")


def load(root: Path, lang: str) -> list[dict]:
    """Every document of a language, in the benchmark's fixed pseudo-random order."""
    docs = []
    for path in sorted((root / lang).glob("*.jsonl.zst")):
        source = path.name.split(".")[0]
        with open(path, "rb") as f:
            for line in io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f), encoding="utf-8"):
                record = json.loads(line)
                docs.append({"id": str(record["id"]), "text": record["text"], "source": source})
    return sorted(docs, key=lambda d: xxhash.xxh3_64_intdigest(f"{lang}/{d['source']}/{d['id']}".encode()))


def perturb(text: str, copy: int, doc_id: str) -> str:
    """Copy `copy` of a text: in each line, adjacent word pairs swapped by the bits of a fixed hash."""
    lines = text.split("\n")
    for n, line in enumerate(lines):
        words = line.split(" ")
        if len(words) < 2:
            continue
        bits = xxhash.xxh3_128_intdigest(f"{copy}/{doc_id}/{n}".encode())
        for i in range(0, len(words) - 1, 2):
            if bits >> (i // 2 % 128) & 1:
                words[i], words[i + 1] = words[i + 1], words[i]
        lines[n] = " ".join(words)
    return "\n".join(lines)


def build(docs: dict[str, list[dict]], budget_bytes: float, folder: Path) -> dict:
    """Write one input (per language, the first `budget_bytes` of text of its order); return its counts."""
    counts = {"documents": 0, "bytes": 0, "perturbed": 0}
    for lang, order in docs.items():
        files: dict[str, list[bytes]] = {}
        size, i = 0, 0
        while size < budget_bytes:
            copy, doc = divmod(i, len(order))
            d = order[doc]
            text = perturb(d["text"], copy, d["id"]) if copy else d["text"]
            record = {"id": f"{d['id']}~{copy}" if copy else d["id"], "text": text}
            files.setdefault(d["source"], []).append(json.dumps(record, ensure_ascii=False).encode() + b"\n")
            size += len(text.encode("utf-8"))
            counts["perturbed"] += copy > 0
            i += 1
        counts["documents"] += i
        counts["bytes"] += size
        for source, lines in files.items():
            path = folder / lang / f"{source}.jsonl.zst"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(zstandard.ZstdCompressor(level=1).compress(b"".join(lines)))
    return counts


def recipe_for(folder: Path, workers: int) -> dict:
    sources = [{"name": f"{p.parent.name}-{p.name.split('.')[0]}", "path": str(p), "lang": p.parent.name, "license": "see SOURCES.md"}
               for p in sorted(folder.glob("*/*.jsonl.zst"))]
    return {"name": "scale", "seed": 0, "languages": {lang: 1 / len(LANGS) for lang in LANGS}, "sources": sources,
            "corpus": {"workers": workers},
            "tokenizer": {"vocab_size": 4096, "sample_chars": 1_000_000, "eval_chars": 100_000},
            "mixture": {"canaries": {"count": 0}},
            "train": {"max_steps": 10, "global_batch_tokens": 1024}}


def child(stage: str, recipe_path: Path, run_dir: Path) -> None:
    """Run one stage in this process and print its costs as JSON (imports are outside the timing)."""
    from fournil.recipe import parse_recipe
    from fournil.runs import run_stage

    recipe = parse_recipe(json.loads(recipe_path.read_text()), recipe_path.parent)
    usage = lambda who: resource.getrusage(who)
    cpu = lambda: sum(u.ru_utime + u.ru_stime for u in (usage(resource.RUSAGE_SELF), usage(resource.RUSAGE_CHILDREN)))
    wall, before = time.perf_counter(), cpu()
    manifest = run_stage(recipe, run_dir, stage, log=lambda m: None)
    result = {"wall": time.perf_counter() - wall, "cpu": cpu() - before,
              "rss_mb": max(usage(resource.RUSAGE_SELF).ru_maxrss, usage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024}
    print(json.dumps(result))


def run_child(stage: str, recipe_path: Path, run_dir: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, __file__, "--child", stage, str(recipe_path), str(run_dir)],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"{stage} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def index_bytes_per_document(texts: list[str]) -> float:
    """Bytes per document of pass 2's dedup structures, built as pass 2 builds them, every band key distinct."""
    import tracemalloc

    from fournil.corpus.config import DedupConfig
    from fournil.corpus.dedup import MinHasher, UnionFind, exact_key

    cfg = DedupConfig()
    hasher = MinHasher(cfg.ngram, cfg.buckets, cfg.hashes_per_bucket, False, 0)
    signatures = [hasher.signature(t) for t in texts]
    keys = [exact_key(t) for t in texts]
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    exact, priorities, lengths, sources, copies = {}, [], [], [], []
    bands: list[dict[bytes, int]] = [{} for _ in range(cfg.buckets)]
    clusters = UnionFind(len(texts))
    for i, (text, key) in enumerate(zip(texts, keys)):
        exact[key] = i
        priorities.append(0)
        lengths.append(len(text))
        sources.append("source")
        copies.append(1)
        for band, band_key in zip(bands, hasher.band_keys(signatures[i])):  # keys made here, as pass 2 reads them from pass 1
            band.setdefault(band_key, i)
    cluster_size = {i: 1 for i in range(len(texts))}
    held = tracemalloc.get_traced_memory()[0] - start
    tracemalloc.stop()
    del exact, bands, clusters, cluster_size
    return held / len(texts)


def dedup_documents(corpus_dir: Path) -> dict[str, int]:
    """Documents pass 2 read per language (what its index holds), from the stage's stats.json."""
    steps = json.loads((corpus_dir / "stats.json").read_text())["by_source"]
    return {lang: sum(cell["read"][0] for cell in sources.values()) for lang, sources in steps["dedup_exact"].items()}


def exponent(sizes: list[float], values: list[float]) -> float:
    return float(np.polyfit(np.log(sizes), np.log(values), 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT.parent / "shared" / "corpus", help="the shared corpus (default: ../shared/corpus beside the repository)")
    parser.add_argument("--base-mb", type=float, default=3.0, help="MB of text at 1×, all six languages together")
    parser.add_argument("--sizes", default="1,2,4", help="multiples of --base-mb")
    parser.add_argument("--workers", type=int, default=2, help="corpus.workers")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        stage, recipe_path, run_dir = args.child
        return child(stage, Path(recipe_path), Path(run_dir))
    if not args.root.is_dir():
        sys.exit(f"{args.root} is not a folder; give --root, the shared corpus (six languages)")
    sizes = [float(s) for s in args.sizes.split(",")]
    docs = {lang: load(args.root, lang) for lang in LANGS}
    per_doc = index_bytes_per_document([d["text"] for d in docs["en"][:2000]])
    print(f"input: {args.root}, 1× = {args.base_mb:g} MB of text; corpus.workers = {args.workers}; "
          f"dedup index ≈ {per_doc:,.0f} bytes per document (tracemalloc, every band key distinct)")
    print(f"{'size':>5} {'docs':>7} {'MB':>6} {'perturbed':>9} | {'stage':<9} {'wall s':>7} {'CPU s':>7} {'MB/s/core':>9} {'peak RSS MB':>11}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            folder = Path(tmp) / f"x{size:g}"
            counts = build(docs, size * args.base_mb * 1e6 / len(LANGS), folder / "input")
            recipe_path = folder / "recipe.json"
            recipe_path.write_text(json.dumps(recipe_for(folder / "input", args.workers)))
            mb = counts["bytes"] / 1e6
            row = {"size": size, "mb": mb, **counts}
            for stage in STAGES:
                row[stage] = result = run_child(stage, recipe_path, folder / "run")
                print(f"{size:>4g}× {counts['documents']:>7} {mb:>6.1f} {counts['perturbed']:>9} | {stage:<9} {result['wall']:>7.1f} "
                      f"{result['cpu']:>7.1f} {mb / result['cpu']:>9.2f} {result['rss_mb']:>11.0f}")
            row["index_mb"] = max(dedup_documents(folder / "run" / "corpus").values()) * per_doc / 1e6
            rows.append(row)
    x = [r["mb"] for r in rows]  # the MB actually drawn (whole documents overshoot the nominal size)
    cpu = [r["corpus"]["cpu"] + r["mixture"]["cpu"] for r in rows]
    wall = [r["corpus"]["wall"] + r["mixture"]["wall"] for r in rows]
    peak = [max(r["corpus"]["rss_mb"], r["mixture"]["rss_mb"]) for r in rows]
    net = [max(r["corpus"]["rss_mb"] - r["index_mb"], r["mixture"]["rss_mb"]) for r in rows]
    for r, c, p, n in zip(rows, cpu, peak, net):
        print(f"{r['size']:>4g}×  corpus + mixture: {c:.1f} s CPU, {r['mb'] / c:.2f} MB/s per core; peak RSS {p:.0f} MB, "
              f"of which dedup index ≤ {r['index_mb']:.1f} MB → {n:.0f} MB without it")
    print(f"fitted exponents against input size ({', '.join(format(r['mb'], '.1f') for r in rows)} MB):")
    print(f"  time (CPU, corpus + mixture)  {exponent(x, cpu):.3f}   target ≤ 1.1   (wall: {exponent(x, wall):.3f}; "
          f"corpus {exponent(x, [r['corpus']['cpu'] for r in rows]):.3f}, mixture {exponent(x, [r['mixture']['cpu'] for r in rows]):.3f})")
    print(f"  peak memory                   {exponent(x, peak):.3f}")
    print(f"  peak memory less dedup index  {exponent(x, net):.3f}   target ≤ 0.3")


if __name__ == "__main__":
    main()
