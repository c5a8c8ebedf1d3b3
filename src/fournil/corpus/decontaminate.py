"""Decontamination: documents sharing a long word n-gram with an evaluation set are dropped.

An evaluation set is a TSV file with a header (every column except id-like ones is text) or a
JSONL file (every string field of 20 characters or more is text). The benchmark is named by its
file stem, so the drop reason says which benchmark the document overlapped.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from fournil.corpus.ngrams import ngram_hashes, normalised_word_hashes
from fournil.errors import FournilError

ID_COLUMNS = {"id", "source", "doc", "label", "idx", "index"}
MIN_JSON_TEXT = 20


def _texts(path: Path) -> list[str]:
    if not path.is_file():
        raise FournilError(f"corpus.decontaminate: {path} is not a file; give JSONL or TSV evaluation sets")
    try:
        if path.suffix.lower() in (".tsv", ".tab"):
            with open(path, encoding="utf-8", newline="") as f:
                rows = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
                return [v for row in rows for k, v in row.items() if k and k.lower() not in ID_COLUMNS and v]
        texts = []
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    record = json.loads(line)
                    values = record.values() if isinstance(record, dict) else [record]
                    texts.extend(v for v in values if isinstance(v, str) and len(v) >= MIN_JSON_TEXT)
        return texts
    except (UnicodeDecodeError, json.JSONDecodeError, csv.Error) as error:
        raise FournilError(f"corpus.decontaminate: {path} is not a readable TSV/JSONL file ({error})") from None


class Decontaminator:
    """Holds the n-gram hashes of every evaluation set; `benchmark(text)` names the first one hit.

    A bit table of the hashes' top bits, about 32 slots an evaluation n-gram, rules out nearly every
    n-gram of a document in one numpy gather; only the few that pass are looked up in the sets."""

    def __init__(self, paths: list[Path], n: int):
        self.n = n
        self.sets: dict[str, set[int]] = {}
        for path in paths:
            grams = [ngram_hashes(normalised_word_hashes(t), n) for t in _texts(path)]
            self.sets[path.stem] = set(np.concatenate(grams).tolist()) if grams else set()
        known = sum(map(len, self.sets.values()))
        self._bits = min(max(16, (32 * known).bit_length()), 28)
        self._table = np.zeros(1 << self._bits, dtype=bool)
        for hashes in self.sets.values():
            self._table[self._slots(np.fromiter(hashes, dtype=np.uint64, count=len(hashes)))] = True

    def _slots(self, grams: np.ndarray) -> np.ndarray:
        return (grams >> np.uint64(64 - self._bits)).astype(np.intp)

    def benchmark(self, text: str) -> str | None:
        if not self.sets:
            return None
        grams = ngram_hashes(normalised_word_hashes(text), self.n)
        candidates = grams[self._table[self._slots(grams)]].tolist()
        if not candidates:
            return None
        for name, hashes in self.sets.items():
            if not hashes.isdisjoint(candidates):
                return name
        return None
