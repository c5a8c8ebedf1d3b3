"""`fournil tokenizer RECIPE`: train on a language-balanced sample of the curated corpus, save a
transformers-loadable folder, and measure fairness per language on held-out text.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from fournil.corpus.documents import iter_documents
from fournil.errors import FournilError
from fournil.runs import StageContext, file_sha256
from fournil.tokenizer import CHAT_TOKENS, SPECIAL_TOKENS, load
from fournil.tokenizer.encoders import HFEncoder, load_encoder
from fournil.parallel import read_pairs
from fournil.tokenizer.report import build_report, capped, write_report
from fournil.tokenizer.sample import BalancedSample
from fournil.tokenizer.save import save
from fournil.tokenizer.train import train_tokenizer

FIGURE_KEYS = ("fertility", "split_word_share", "bytes_per_token", "chars_per_token", "parity_vs_en", "words", "tokens")
CODE = "code"  # a share under this name draws documents of category `code`, whatever their language


class CorpusTexts:
    """Texts of one pool of the corpus, read again at every iteration."""

    def __init__(self, corpus: Path, split: str, lang: str | None, code: bool | None):
        self.corpus, self.split, self.lang, self.code = corpus, split, lang, code

    def __iter__(self) -> Iterator[str]:
        for doc in iter_documents(self.corpus, split=self.split, lang=self.lang):
            if self.code is None or (doc.get("category") == CODE) == self.code:
                yield doc["text"]


def pools(corpus: Path, shares: dict[str, float], languages: list[str], split: str) -> dict[str, CorpusTexts]:
    """Texts per share key: a language (its non-code documents when `code` has a share) or `code`."""
    has_code = CODE in shares
    return {key: CorpusTexts(corpus, split, None, True) if key == CODE else CorpusTexts(corpus, split, key, False if has_code else None)
            for key in shares}


def run(ctx: StageContext) -> dict:
    recipe, config, out = ctx.recipe, ctx.recipe.tokenizer, ctx.out
    languages = list(recipe.language_codes)
    shares = config.shares or dict.fromkeys(languages, 1.0 / len(languages))
    unknown = sorted(set(shares) - set(languages) - {CODE})
    if unknown:
        raise FournilError(f"tokenizer.shares names {unknown}, which are not recipe languages {languages} (or `code`); fix tokenizer.shares")
    corpus = ctx.input("corpus")

    t0 = time.time()
    if ctx.resuming and (out / "tokenizer.json").is_file():
        ctx.log("[tokenizer] reusing the tokenizer trained before the interruption")
        tokenizer, sample_chars = load(out), {}
    else:
        sample = BalancedSample(pools(corpus, shares, languages, "train"), shares, config.sample_chars, recipe.seed)
        empty = [key for key, chars in sample.available.items() if not chars]
        if empty:
            raise FournilError(f"tokenizer: no training text for {empty} in {corpus}; give those languages sources or drop them from tokenizer.shares")
        ctx.log(f"[tokenizer] training a {config.vocab_size:,}-token BPE on {config.sample_chars:,} characters: "
                + ", ".join(f"{k} {v:.0%}" for k, v in shares.items()))
        tokenizer = train_tokenizer(sample, config)
        sample_chars = sample.chars
        save(tokenizer, out)
    train_seconds = round(time.time() - t0, 2)

    heldout = {lang: capped(CorpusTexts(corpus, "heldout", lang, None), config.eval_chars) for lang in languages}
    missing = [lang for lang, texts in heldout.items() if not texts]
    if missing:
        ctx.log(f"[tokenizer] no held-out documents for {missing}: no figures for them (raise corpus.heldout_fraction)")
    heldout = {lang: texts for lang, texts in heldout.items() if texts}
    pairs, skipped = parallel_pairs(ctx, config.eval_pairs)
    encoders = [HFEncoder(load(out), "fournil")] + [load_encoder(spec, recipe.base_dir) for spec in config.references]
    ctx.log(f"[tokenizer] measuring {', '.join(e.name for e in encoders)} on held-out text")
    report = build_report(encoders, heldout, pairs, {"parallel_skipped": skipped, "sample_chars": sample_chars})
    write_report(report, out, f"Tokenizer report: {recipe.name}")

    ours = report["results"][0]
    ids = {token: tokenizer.token_to_id(token) for token in SPECIAL_TOKENS}
    return {
        "vocab_size": tokenizer.get_vocab_size(),
        "sha256": file_sha256(out / "tokenizer.json"),
        "special_tokens": {"bos": ids["<|begin_of_text|>"], "eos": ids["<|end_of_text|>"], "pad": ids["<|pad|>"],
                           **{t.strip("<|>"): ids[t] for t in CHAT_TOKENS}},
        "per_language": {lang: {k: v for k, v in f.items() if k in FIGURE_KEYS} for lang, f in ours["per_language"].items()},
        "sample_chars_per_language": sample_chars,
        "references": {r["name"]: {lang: f["fertility"] for lang, f in r["per_language"].items()} for r in report["results"][1:]},
        "train_seconds": train_seconds,
    }



def parallel_pairs(ctx: StageContext, limit: int) -> tuple[dict[str, list[tuple[str, str]]], dict[str, dict[str, int]]]:
    """(English, other) pairs per other language, from the recipe's parallel sources that include English."""
    pairs: dict[str, list[tuple[str, str]]] = {}
    skipped: dict[str, dict[str, int]] = {}
    for source in ctx.recipe.parallel:
        if "en" not in source.langs or source.langs[0] == source.langs[1]:
            continue
        other = source.langs[1] if source.langs[0] == "en" else source.langs[0]
        have = pairs.setdefault(other, [])
        if len(have) >= limit:
            continue
        found, bad = read_pairs(ctx.recipe.resolve(source.path), "en", other, limit - len(have))
        have.extend(found)
        if bad:
            skipped[source.name] = dict(bad)
            ctx.log(f"[tokenizer] {source.name}: skipped {sum(bad.values())} malformed lines ({dict(bad)})")
    return {lang: p for lang, p in pairs.items() if p}, skipped
