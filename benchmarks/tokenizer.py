"""Tokenizer benchmark: train fournil's tokenizer on a language-balanced sample, then print its
training time, fairness figures and encode speed next to reference tokenizers on the same text.

    python benchmarks/tokenizer.py --corpus ../shared/corpus --corpus-run /tmp/fournil-curated --langs fr,en --vocab 32000
    python benchmarks/tokenizer.py --corpus ../shared/corpus --corpus-run /tmp/fournil-curated --langs fr,en,de,es,it,pt --vocab 64000

The corpus is raw (`<lang>/<source>.jsonl.zst`, `parallel/en-<lang>.tsv[.zst]`) or a corpus stage
folder (`train/`, `heldout/`). With `--corpus-run DIR`, a raw corpus is first curated by the corpus
stage into `DIR/corpus` (every source of every language but `--exclude`, fortunes by default: no
licence), with the recipe seed; the stage is skipped when DIR holds a current run, so DIR caches it
between runs. The tokenizer is then trained on the curated training documents and measured on the
curated held-out ones. Without it, raw documents are held out by document key with the corpus
stage's rule (xxh3 of `seed/key` below the fraction), so no document is both trained on and measured.
References: `gpt2`, `mistral-v1` and `tekken` when openai-whisper / mistral-common are installed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import xxhash

from fournil.compressed import byte_lines
from fournil.corpus.documents import iter_documents, read_documents
from fournil.errors import FournilError
from fournil.tokenizer import load
from fournil.tokenizer.config import TokenizerConfig
from fournil.tokenizer.encoders import INSTALLED, HFEncoder, installed_path, load_encoder
from fournil.tokenizer.metrics import parity
from fournil.parallel import read_pairs
from fournil.tokenizer.report import build_report, capped, markdown
from fournil.tokenizer.sample import BalancedSample
from fournil.tokenizer.save import save
from fournil.tokenizer.train import train_tokenizer


def is_heldout(doc_id: str, seed: int, fraction: float) -> bool:
    """The corpus stage's rule: by document key, so every language's copy lands on the same side."""
    return xxhash.xxh3_64_intdigest(f"{seed}/{doc_id.split('#')[0]}".encode("utf-8", "surrogatepass")) < fraction * 2**64


class Texts:
    def __init__(self, corpus: Path, lang: str, heldout: bool, seed: int, fraction: float):
        self.corpus, self.lang, self.heldout, self.seed, self.fraction = corpus, lang, heldout, seed, fraction

    def __iter__(self):
        if (self.corpus / "train").is_dir():
            yield from (d["text"] for d in iter_documents(self.corpus, "heldout" if self.heldout else "train", self.lang))
            return
        for path in sorted((self.corpus / self.lang).glob("*.jsonl*")):
            for doc in read_documents(path):
                if is_heldout(doc["id"], self.seed, self.fraction) == self.heldout:
                    yield doc["text"]


def curate(root: Path, run_dir: Path, exclude: set[str], seed: int, fraction: float) -> Path:
    """Run the corpus stage on every `root/<lang>/<source>.jsonl.zst` (sources in `exclude` left out)
    into `run_dir/corpus`; skipped when `run_dir` already holds it for the same recipe. Every language
    is curated whatever `--langs` says, so paragraphs are routed as in a full run and one cache serves all."""
    from fournil.recipe import parse_recipe
    from fournil.runs import run_stage

    langs = sorted(p.name for p in root.iterdir() if p.is_dir() and any(p.glob("*.jsonl.zst")))
    sources = [{"name": f"{lang}-{p.name.split('.')[0]}", "path": str(p.resolve()), "lang": lang, "license": "see SOURCES.md"}
               for lang in langs for p in sorted((root / lang).glob("*.jsonl.zst")) if p.name.split(".")[0] not in exclude]
    recipe = parse_recipe({"name": "bench-tokenizer", "seed": seed, "languages": dict.fromkeys(langs, 1 / len(langs)),
                           "sources": sources, "corpus": {"heldout_fraction": fraction}}, root)
    run_stage(recipe, run_dir, "corpus")
    return run_dir / "corpus"


def parallel(corpus: Path, langs: list[str], limit: int) -> dict[str, list[tuple[str, str]]]:
    pairs = {}
    for lang in langs:
        files = sorted((corpus / "parallel").glob(f"en-{lang}.*tsv*"))
        if lang != "en" and files:
            pairs[lang] = read_pairs(files[0], "en", lang, limit)[0]
    return pairs


def heldout_pairs(corpus: Path, langs: list[str], seed: int, fraction: float) -> dict[str, list[tuple[str, str]]]:
    """(English, lang) pairs of every source whose document (`source/doc`, the corpus documents' key)
    the corpus stage holds out: translations the tokenizer was not trained on."""
    pairs = {}
    for lang in langs:
        files = sorted((corpus / "parallel").glob(f"en-{lang}.*tsv*"))
        if lang == "en" or not files:
            continue
        lines = (line.decode("utf-8").rstrip("\r\n") for line in byte_lines(files[0]))
        columns = next(lines).split("\t")
        rows = (dict(zip(columns, line.split("\t"))) for line in lines)
        pairs[lang] = [(row["en"], row[lang]) for row in rows if len(row) == len(columns) and row["en"].strip() and row[lang].strip()
                       and is_heldout(f"{row['source']}/{row['doc']}", seed, fraction)]
    return {lang: found for lang, found in pairs.items() if found}


def encode_speed(encoder, texts: list[str], repeats: int = 2) -> float:
    """MB/s of `encoder.counts` on `texts` (batch encoding, the encoder's own threads)."""
    size = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    encoder.counts(texts[:10])
    t0 = time.perf_counter()
    for _ in range(repeats):
        for start in range(0, len(texts), 256):
            encoder.counts(texts[start : start + 256])
    return repeats * size / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path(__file__).resolve().parents[1] / "data" / "sample")
    parser.add_argument("--corpus-run", type=Path, help="curate the raw --corpus with the corpus stage into this run folder first (cached there)")
    parser.add_argument("--exclude", default="fortunes", help="comma-separated sources left out when curating")
    parser.add_argument("--langs", default="fr,en")
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--sample-chars", type=int, default=20_000_000)
    parser.add_argument("--pre-tokenizer", choices=["llama-bpe", "qwen35"], default="llama-bpe", help="llama.cpp's pre-tokenizer (tokenizer.pre_tokenizer)")
    parser.add_argument("--eval-chars", type=int, default=2_000_000)
    parser.add_argument("--heldout-fraction", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--references", default=",".join(INSTALLED), help="comma-separated names or paths")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-tokenizer"))
    args = parser.parse_args()
    langs = args.langs.split(",")
    pairs = parallel(args.corpus, langs, 5000)
    held_pairs = heldout_pairs(args.corpus, langs, args.seed, args.heldout_fraction)
    if args.corpus_run:
        t0 = time.perf_counter()
        args.corpus = curate(args.corpus, args.corpus_run, set(args.exclude.split(",")), args.seed, args.heldout_fraction)
        print(f"curated corpus: {args.corpus} ({time.perf_counter() - t0:.0f}s)")

    train = {lang: Texts(args.corpus, lang, False, args.seed, args.heldout_fraction) for lang in langs}
    sample = BalancedSample(train, dict.fromkeys(langs, 1.0), args.sample_chars, args.seed)
    t0 = time.perf_counter()
    tokenizer = train_tokenizer(sample, TokenizerConfig(vocab_size=args.vocab, sample_chars=args.sample_chars, pre_tokenizer=args.pre_tokenizer))
    train_seconds = time.perf_counter() - t0
    save(tokenizer, args.out)
    print(f"trained {tokenizer.get_vocab_size():,} tokens on {sum(sample.chars.values()):,} characters "
          f"({', '.join(f'{k} {v:,}' for k, v in sample.chars.items())}) in {train_seconds:.1f}s (reading the corpus included)")

    heldout = {lang: capped(Texts(args.corpus, lang, True, args.seed, args.heldout_fraction), args.eval_chars) for lang in langs}
    encoders = [HFEncoder(load(args.out), "fournil")]
    for spec in filter(None, args.references.split(",")):
        if spec in INSTALLED and installed_path(spec) is None:
            print(f"(reference {spec} skipped: its package is not installed)", file=sys.stderr)
            continue
        encoders.append(load_encoder(spec))
    report = build_report(encoders, heldout, pairs)
    print(markdown(report, f"{args.vocab:,}-token fournil tokenizer on {', '.join(langs)} (1:1)"))

    if held_pairs:
        print("## Parity on held-out pairs (documents held out by the corpus stage's rule, every source)\n")
        print("| language | pairs | " + " | ".join(e.name for e in encoders) + " |")
        print("|---|---:|" + "---:|" * len(encoders))
        for lang, found in held_pairs.items():
            print(f"| {lang} | {len(found):,} | " + " | ".join(f"{parity(e, found):.3f}" for e in encoders) + " |")
        print()

    texts = [t for lang in langs for t in heldout[lang]]
    mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    print(f"## Encode speed on {mb:.1f} MB of held-out text (batches of 256 texts)\n")
    base = None
    for encoder in encoders:
        speed = encode_speed(encoder, texts)
        base = base or speed
        print(f"- {encoder.name}: {speed:.1f} MB/s ({speed / base:.2f}× fournil)")


if __name__ == "__main__":
    try:
        main()
    except FournilError as error:
        sys.exit(f"error: {error}")
