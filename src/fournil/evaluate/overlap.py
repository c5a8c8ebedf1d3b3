"""Does a task example occur in a training text? Word n-grams of the example looked up in the training text's.

A text of L words is found when any run of min(L, 13) of its words (lower-cased, punctuation ignored,
as corpus decontamination counts words) occurs in the training text: a short sentence must be absent
as a whole, a long one must share no 13 words in a row (the corpus stage's default window).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from fournil.corpus.ngrams import ngram_hashes, normalised_word_hashes

WINDOW = 13
SEPARATOR = np.zeros(1, dtype=np.uint64)  # no word hashes to 0 in practice; a text's own n-grams never hold it


class TrainingText:
    """The word hashes of every training document, and their n-grams per length, computed on demand."""

    def __init__(self, texts: Iterable[str]) -> None:
        # one array, documents apart by a separator hash: an n-gram across two documents holds it, so it matches nothing
        parts = [piece for t in texts for piece in (normalised_word_hashes(t), SEPARATOR)]
        self.words = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)
        self._grams: dict[int, np.ndarray] = {}

    def _ngrams(self, n: int) -> np.ndarray:
        if n not in self._grams:
            self._grams[n] = np.sort(ngram_hashes(self.words, n))  # sorted for binary search (np.unique is ~100x slower here)
        return self._grams[n]

    def found(self, texts: list[str]) -> list[bool]:
        """For each text, whether one of its min(L, 13)-word runs occurs in the training text (empty texts: False)."""
        hashes = [normalised_word_hashes(t) for t in texts]
        result = [False] * len(texts)
        by_length: dict[int, list[int]] = {}
        for i, h in enumerate(hashes):
            if len(h):
                by_length.setdefault(min(len(h), WINDOW), []).append(i)
        for n, indices in by_length.items():
            grams = self._ngrams(n)
            if not len(grams):
                continue
            queries = [ngram_hashes(hashes[i], n) for i in indices]
            owner = np.repeat(np.arange(len(indices)), [len(q) for q in queries])
            flat = np.concatenate(queries)
            at = np.minimum(np.searchsorted(grams, flat), len(grams) - 1)  # grams is sorted: one binary search per n-gram
            for k in np.unique(owner[grams[at] == flat]):
                result[indices[k]] = True
        return result
