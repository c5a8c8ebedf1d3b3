"""Per-language quality rules (Gopher repetition and quality, FineWeb line rules) and their settings.

Settings come from `languages/<lang>.yaml` (FineWeb-2's published per-language values) laid over
`languages/_common.yaml`; a recipe can override them with its own folder. A language without a
file gets `fallback.yaml` (structural rules only: no stopwords, no English word-length bounds), and
the stats say so. Repetition is measured with exact word and n-gram ids and numpy instead of Python
loops over n-gram strings: the stock Gopher repetition filter is the slowest step of a FineWeb
pipeline.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from fournil.errors import FournilError

SHIPPED = Path(__file__).parent / "languages"
TERMINAL_PUNCTUATION = tuple(".!?…:;\"'»”。！？")
BULLETS = ("•", "-", "*", "·", "‣", "◦", "–")
HAS_ALNUM = re.compile(r"[^\W_]").search
HAS_ALPHA = re.compile(r"[^\W\d_]").search


def _load_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as error:
        raise FournilError(f"{path}: not a readable YAML settings file ({error})") from None
    if not isinstance(data, dict):
        raise FournilError(f"{path}: expected a mapping of settings")
    return data


def load_settings(lang: str, settings_dir: Path | None = None) -> dict[str, Any]:
    """The filter settings of a language, with `origin` naming where they came from."""
    settings = _load_yaml(SHIPPED / "_common.yaml")
    for folder in ([settings_dir] if settings_dir else []) + [SHIPPED]:
        path = folder / f"{lang}.yaml"
        if path.is_file():
            settings.update(_load_yaml(path))
            settings.setdefault("origin", str(path))
            if folder != SHIPPED:
                settings["origin"] = f"{path} (recipe settings_dir)"
            return settings
    settings.update(_load_yaml(SHIPPED / "fallback.yaml"))
    return settings


class NGrams:
    """The n-grams of a word sequence as exact ids, for n = 1, 2, ... in turn.

    No hashing: a word's id is its rank of first occurrence, an n-gram's id the rank of its
    (n-1)-gram and last word among the document's n-grams, so the same document gives the same
    ids, counts and choices in every process (Python's `hash` is salted per process).
    `occurrences(n)` sorts the n-grams once, the position riding in the low bits of the key, so
    equal n-grams are grouped with their earliest occurrence first without an argsort.
    """

    def __init__(self, words: list[str]):
        distinct = dict.fromkeys(words)
        index = dict(zip(distinct, range(len(distinct))))
        self.words = np.fromiter(map(index.__getitem__, words), dtype=np.int64, count=len(words))
        self.vocabulary = len(index)
        self.bits = max(1, len(words).bit_length())
        self.n, self.ids, self.sorted = 1, self.words, None

    def occurrences(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions of the n-grams sorted by n-gram then position, and where a run of equal n-grams starts."""
        while self.n < n:
            self.ids = self._dense()[:-1] * self.vocabulary + self.words[self.n:]
            self.n, self.sorted = self.n + 1, None
        if self.sorted is None:
            self.sorted = self._sort(self.ids)
        return self.sorted

    def _dense(self) -> np.ndarray:
        """The current n-grams' ids as ranks 0, 1, ... (word ids already are)."""
        if self.n == 1:
            return self.words
        positions, starts = self.occurrences(self.n)
        dense = np.empty(len(positions), dtype=np.int64)
        dense[positions] = np.cumsum(starts) - 1
        return dense

    def _sort(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        positions = np.arange(len(keys), dtype=np.int64)
        if len(keys) and int(keys.max()) < 2 ** (62 - self.bits):
            packed = np.sort((keys << self.bits) | positions)
            grams, positions = packed >> self.bits, packed & ((1 << self.bits) - 1)
        else:  # a document too long for the packed key
            order = np.lexsort((positions, keys))
            grams, positions = keys[order], order
        starts = np.ones(len(grams), dtype=bool)
        starts[1:] = grams[1:] != grams[:-1]
        return positions, starts


def _duplicate_fractions(items: list[str]) -> tuple[float, float]:
    """Share of items that repeat an earlier one, and share of characters in them."""
    seen: set[str] = set()
    dup_items = dup_chars = total_chars = 0
    for item in items:
        total_chars += len(item)
        if item in seen:
            dup_items += 1
            dup_chars += len(item)
        else:
            seen.add(item)
    return dup_items / max(len(items), 1), dup_chars / max(total_chars, 1)


class QualityRules:
    """Gopher + FineWeb rules for one language; `check(text)` returns None (keep) or a drop reason."""

    def __init__(self, settings: dict[str, Any]):
        self.s = settings
        self.stopwords = set(settings.get("stopwords") or [])
        self.by_chars = settings.get("words") == "chars"

    def words(self, text: str) -> list[str]:
        return [c for c in text if not c.isspace()] if self.by_chars else text.split()

    def check(self, text: str) -> str | None:
        s = self.s
        words = self.words(text)
        n_words = len(words)
        # Gopher quality: length, word length, symbols, bullets, ellipses, alphabetic words, stopwords
        # word classes are decided once per distinct word, then counted over all words in C
        distinct = set(words)
        no_letter = {w for w in distinct if not HAS_ALPHA(w)}
        symbols = {w for w in no_letter if not HAS_ALNUM(w)}
        n_symbols = sum(map(symbols.__contains__, words)) if symbols else 0
        n_non_symbol = n_words - n_symbols
        if n_non_symbol < s["min_doc_words"]:
            return "gopher_too_few_words"
        if n_non_symbol > s["max_doc_words"]:
            return "gopher_too_many_words"
        if not self.by_chars:
            mean = (sum(map(len, words)) - sum(map(len, filter(symbols.__contains__, words)))) / n_non_symbol
            if mean < s["min_avg_word_length"]:
                return "gopher_short_words"
            if mean > s["max_avg_word_length"]:
                return "gopher_long_words"
        if (text.count("#") + text.count("...") + text.count("…")) / n_words > s["max_symbol_word_ratio"]:
            return "gopher_symbol_ratio"
        lines = [line for line in text.split("\n") if line.strip()]
        stripped = [line.strip() for line in lines]
        if sum(line.startswith(BULLETS) for line in stripped) / len(lines) > s["max_bullet_lines_ratio"]:
            return "gopher_bullet_lines"
        if sum(line.endswith(("...", "…")) for line in stripped) / len(lines) > s["max_ellipsis_lines_ratio"]:
            return "gopher_ellipsis_lines"
        if (n_words - (sum(map(no_letter.__contains__, words)) if no_letter else 0)) / n_words < s["max_non_alpha_words_ratio"]:
            return "gopher_non_alpha_words"
        if s.get("min_stop_words", 0) and self._stopwords(words) < s["min_stop_words"]:
            return "gopher_too_few_stopwords"
        # Gopher repetition: paragraphs, lines, top n-grams, duplicated n-grams
        paragraphs = [p for p in text.split("\n\n") if p.strip()]
        frac, chars = _duplicate_fractions(paragraphs)
        if frac > s["dup_para_frac"]:
            return "gopher_dup_paragraphs"
        if chars > s["dup_para_char_frac"]:
            return "gopher_dup_paragraph_chars"
        frac, dup_line_chars = _duplicate_fractions(stripped)
        if frac > s["dup_line_frac"]:
            return "gopher_dup_lines"
        if dup_line_chars > s["dup_line_char_frac"]:
            return "gopher_dup_line_chars"
        reason = self._ngrams(words)
        if reason:
            return reason
        # FineWeb: line punctuation, short lines, duplicated line characters, list-like documents
        if sum(line.endswith(TERMINAL_PUNCTUATION) for line in stripped) / len(lines) < s["line_punct_thr"]:
            return "fineweb_line_punctuation"
        if sum(len(line) <= s["short_line_length"] for line in stripped) / len(lines) >= s["short_line_thr"]:
            return "fineweb_short_lines"
        if dup_line_chars * sum(map(len, stripped)) / max(len(text.replace("\n", "")), 1) > s["char_duplicates_ratio"]:
            return "fineweb_dup_line_chars"
        if text.count("\n") / n_words > s["new_line_ratio"]:
            return "fineweb_list_ratio"
        return None

    def _stopwords(self, words: list[str]) -> int:
        """Stopwords among the words, case-insensitive (the exact-case count is enough for most documents)."""
        exact = sum(map(self.stopwords.__contains__, words))
        return exact if exact >= self.s["min_stop_words"] else sum(map(self.stopwords.__contains__, map(str.lower, words)))

    def _ngrams(self, words: list[str]) -> str | None:
        grams = NGrams(words)
        lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
        total = lengths.sum()
        prefix = np.concatenate([[0], np.cumsum(lengths)])
        for n, limit in self.s["top_n_grams"]:
            if len(words) < n:
                break
            positions, starts = grams.occurrences(n)
            first = np.flatnonzero(starts)
            counts = np.diff(np.append(first, len(positions)))
            top = counts.max()
            if top > 1:
                start = positions[first[counts == top]].min()  # of equally frequent n-grams, the first to occur
                if (prefix[start + n] - prefix[start]) * top / total > limit:
                    return f"gopher_top_{n}gram"
        smallest_limit = min(limit for _, limit in self.s["dup_n_grams"])
        for n, limit in self.s["dup_n_grams"]:
            if len(words) < n:
                break
            positions, starts = grams.occurrences(n)
            repeats = positions[~starts]  # every occurrence after an n-gram's first
            if len(repeats) == 0:
                break  # no repeated n-gram: no longer one either
            cover = np.zeros(len(words) + 1, dtype=np.int64)
            np.add.at(cover, repeats, 1)
            np.add.at(cover, repeats + n, -1)
            covered = np.cumsum(cover[:-1]) > 0
            fraction = lengths[covered].sum() / total
            if fraction > limit:
                return f"gopher_dup_{n}gram"
            if fraction <= smallest_limit:  # longer n-grams repeat no more than shorter ones
                break
        return None
