"""Stable word and n-gram hashes shared by near-dedup and decontamination.

Hashes are fixed functions of the text, not Python's per-process `hash`, so two runs, or two
processes, give the same shingles and therefore the same duplicates. Word hashes are computed for
a whole text in one C pass (a polynomial hash over each word's code points, arithmetic modulo 2⁶⁴,
then mixed), so no Python code runs per word; n-grams of them with numpy.
"""

from __future__ import annotations

import functools

import numpy as np

from fournil.corpus import _kernels

MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
BASE = 0x100000001B3  # a word's hash: mix(sum over its code points p_j of (p_j + 1) * BASE**j), modulo 2**64


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit reaches every output bit."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@functools.lru_cache(maxsize=1)  # pass 1 hashes each final text twice in a row: for decontamination, then its MinHash bands
def normalised_word_hashes(text: str) -> np.ndarray:
    """One stable 64-bit hash per lower-cased run of word characters (re's `\\w`: what "the same words"
    means across punctuation and case), from one C pass (`_kernels.word_hashes`, with BASE and `_mix`);
    read-only, since the last result is shared."""
    return np.frombuffer(_kernels.word_hashes(text.lower()), dtype=np.uint64)


def character_hashes(text: str) -> np.ndarray:
    """One stable hash per lower-cased non-space character (the words of languages written without spaces)."""
    points = np.frombuffer("".join(text.lower().split()).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    return _mix(points.astype(np.uint64) + np.uint64(1))


def ngram_hashes(hashes: np.ndarray, n: int) -> np.ndarray:
    """One 64-bit hash per n consecutive items (a polynomial over the item hashes)."""
    if len(hashes) < n:
        return hashes[:0]
    keys = hashes[: len(hashes) - n + 1].copy()
    for k in range(1, n):
        keys = keys * MULTIPLIER + hashes[k: len(hashes) - n + 1 + k]
    return keys
