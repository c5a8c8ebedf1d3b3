"""Stable word and n-gram hashes (numpy) shared by near-dedup and decontamination.

Hashes are fixed functions of the text, not Python's per-process `hash`, so two runs, or two
processes, give the same shingles and therefore the same duplicates. Word hashes are computed for
a whole text at once: a polynomial prefix hash over its code points (arithmetic modulo 2⁶⁴), read
off between word boundaries, then mixed, so no Python code runs per word.
"""

from __future__ import annotations

import functools

import numpy as np

MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
BASE = 0x100000001B3  # odd, so it has an inverse modulo 2**64
_POWERS = {"up": np.ones(1, dtype=np.uint64), "down": np.ones(1, dtype=np.uint64)}


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """BASE**k and BASE**-k modulo 2**64 for k < n (cached, grown by doubling)."""
    if len(_POWERS["up"]) < n:
        size = 1 << (n - 1).bit_length()
        up = np.empty(size, dtype=np.uint64)
        up[0] = 1
        up[1:] = np.cumprod(np.full(size - 1, BASE, dtype=np.uint64))
        down = np.empty(size, dtype=np.uint64)
        down[0] = 1
        down[1:] = np.cumprod(np.full(size - 1, pow(BASE, -1, 1 << 64), dtype=np.uint64))
        _POWERS["up"], _POWERS["down"] = up, down
    return _POWERS["up"][:n], _POWERS["down"][:n]


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit reaches every output bit."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@functools.cache
def word_characters() -> np.ndarray:
    """For every code point, whether regex `\\w` matches it (a letter or digit of any script, or `_`)."""
    return np.array([chr(c).isalnum() or c == 95 for c in range(0x110000)], dtype=bool)


@functools.lru_cache(maxsize=1)  # pass 1 hashes each final text twice in a row: for decontamination, then its MinHash bands
def normalised_word_hashes(text: str) -> np.ndarray:
    """One stable 64-bit hash per lower-cased run of word characters (what "the same words" means across
    punctuation and case); read-only, since the last result is shared."""
    points = np.frombuffer(text.lower().encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    inside = np.zeros(len(points) + 2, dtype=bool)
    inside[1:-1] = word_characters()[points]
    edges = np.flatnonzero(inside[1:] != inside[:-1])  # alternating word starts and ends
    starts, ends = edges[0::2], edges[1::2]
    up, down = _powers(len(points))
    prefix = np.zeros(len(points) + 1, dtype=np.uint64)
    np.cumsum((points.astype(np.uint64) + np.uint64(1)) * up, out=prefix[1:])
    hashes = _mix((prefix[ends] - prefix[starts]) * down[starts])
    hashes.flags.writeable = False
    return hashes


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
