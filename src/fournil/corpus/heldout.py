"""The held-out sample: the held-out documents bits per byte is measured on, for every stage that measures it.

Training's in-loop evaluation and the evaluate stage both take their text from here, so with the
same count (`train.eval_docs_per_language`, `evaluate.max_docs_per_language`) they score the same
documents in the same order, and the last bits per byte logged in training is the evaluate stage's
figure for train/final; with a smaller count, training scores the first documents of that sample.
"""

from __future__ import annotations

from itertools import islice, zip_longest
from pathlib import Path

from fournil.corpus.documents import iter_documents


def heldout_sample(corpus_dir: Path, lang: str, documents: int) -> list[str]:
    """Up to `documents` held-out texts of one language, whole: its sources in turn (by name), each in the
    corpus's fixed order, so every source is represented however small the sample."""
    sources = sorted(p.name for p in (corpus_dir / "heldout" / lang).glob("*") if p.is_dir())
    streams = [iter_documents(corpus_dir, "heldout", lang, source) for source in sources]
    interleaved = (d["text"] for group in zip_longest(*streams) for d in group if d is not None and d.get("text"))
    return list(islice(interleaved, documents))


def heldout_samples(corpus_dir: Path, languages: list[str], documents: int) -> dict[str, list[str]]:
    """`heldout_sample` of each language (an empty list where the corpus holds none)."""
    return {lang: heldout_sample(corpus_dir, lang, documents) for lang in languages}
