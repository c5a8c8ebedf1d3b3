"""Deduplication within a language, across all its sources: exact, then MinHash LSH.

Exact duplicates share the hash of their lower-cased, whitespace-collapsed text. Near duplicates
share at least one LSH band of their MinHash signature (word n-grams, or character n-grams for
languages written without spaces). In each cluster the copy from the highest-priority source is
kept (ties: the first read), and it records how many copies the cluster had, so a later stage may
up-weight repeated text (FineWeb-2's "rehydration").
"""

from __future__ import annotations

import numpy as np
import xxhash

from fournil.corpus import _kernels
from fournil.corpus.ngrams import character_hashes, ngram_hashes, normalised_word_hashes

KEY_BYTES = 16  # an LSH band's key: its xxh3-128 digest


def exact_key(text: str) -> int:
    """A 64-bit hash of the lower-cased text with its white space collapsed (one C pass; the collapsed text is never built)."""
    return _kernels.collapsed_hash(text.lower())


class MinHasher:
    """MinHash signatures with multiply-add hashing modulo 2**64 (no division: the minimum is over wrapped products)."""

    def __init__(self, n: int, buckets: int, rows: int, by_chars: bool, seed: int):
        rng = np.random.default_rng(seed)
        count = buckets * rows
        self.a = rng.integers(0, 1 << 63, size=count, dtype=np.uint64) * np.uint64(2) + np.uint64(1)  # odd
        self.b = rng.integers(0, 1 << 63, size=count, dtype=np.uint64)
        self.n, self.buckets, self.rows, self.by_chars = n, buckets, rows, by_chars

    def signature(self, text: str) -> np.ndarray:
        items = character_hashes(text) if self.by_chars else normalised_word_hashes(text)
        shingles = ngram_hashes(items, min(self.n, max(len(items), 1)))
        if len(shingles) == 0:
            shingles = np.zeros(1, dtype=np.uint64)
        signature = np.full(len(self.a), np.iinfo(np.uint64).max, dtype=np.uint64)
        _kernels.minhash(shingles, self.a, self.b, signature)
        return signature

    def band_keys(self, signature: np.ndarray) -> list[bytes]:
        """One key per LSH band, the xxh3-128 digest of its rows: 16 bytes to keep in the index instead
        of 8 bytes a row, and as good as the rows themselves (two different bands share a key with
        probability 2**-128)."""
        data, width = signature.tobytes(), self.rows * signature.itemsize
        return [xxhash.xxh3_128_digest(data[i * width:(i + 1) * width]) for i in range(self.buckets)]


class UnionFind:
    def __init__(self, size: int = 0):
        self.parent = list(range(size))

    def add(self) -> int:
        """A new element, in a set of its own: its index."""
        self.parent.append(len(self.parent))
        return len(self.parent) - 1

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)


def choose(clusters: UnionFind, members: list[int], priorities: list[int]) -> dict[int, int]:
    """Per cluster root, the member kept: highest priority, then first read."""
    best: dict[int, int] = {}
    for i in members:
        root = clusters.find(i)
        j = best.get(root)
        if j is None or priorities[i] > priorities[j]:
            best[root] = i
    return best
