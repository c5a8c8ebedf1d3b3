"""Per-language quality rules (Gopher repetition and quality, FineWeb line rules) and their settings.

Settings come from `languages/<lang>.yaml` (FineWeb-2's published per-language values) laid over
`languages/_common.yaml`; a recipe can override them with its own folder. A language without a
file gets `fallback.yaml` (structural rules only: no stopwords, no English word-length bounds), and
the stats say so. Repetition is measured with exact word and n-gram ids and numpy instead of Python
loops over n-gram strings: the stock Gopher repetition filter is the slowest step of a FineWeb
pipeline.
"""

from __future__ import annotations

from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from fournil.corpus import _kernels
from fournil.errors import FournilError

SHIPPED = Path(__file__).parent / "languages"
TERMINAL_PUNCTUATION = tuple(".!?…:;\"'»”。！？")
BULLETS = ("•", "-", "*", "·", "‣", "◦", "–")


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


class Repetition:
    """Word n-gram repetition of many documents at once, with exact ids, for n = 1, 2, ... in turn.

    Per document and n it gives the count of the most frequent n-gram, the characters of the
    first-occurring n-gram of that count, and the characters inside n-grams that repeat an earlier
    one (Gopher's top and duplicated n-gram rules). No hashing: a word's id is the position of its
    first occurrence in its document, an n-gram's id combines the rank of its (n-1)-gram and its
    last word's id, so the figures are the same in every process (Python's `hash` is salted). An
    n-gram can only repeat where the (n-1)-grams at its position and the next both repeat, so each
    n sorts only those candidates (half the words for bigrams, a few percent once n passes 3), and
    all documents of a batch share each numpy call: per-call overhead, not sorting, is what a
    document at a time would cost.
    """

    def __init__(self, firsts: list[np.ndarray], lengths: list[np.ndarray], top_ns: set[int], dup_ns: set[int]):
        """Per document, each word's id (the index of its first occurrence, `Words.ids`) and each word's length in characters."""
        sizes = list(map(len, firsts))
        words = sum(sizes)
        offsets = np.zeros(len(firsts) + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        self.ids = np.concatenate(firsts) + np.repeat(offsets[:-1], sizes)
        self.chars = np.zeros(words + 1, dtype=np.int64)  # characters before each word
        np.cumsum(np.concatenate(lengths), out=self.chars[1:])
        self.totals = (self.chars[offsets[1:]] - self.chars[offsets[:-1]]).tolist()
        self.offsets, self.words, self.documents = offsets, words, len(firsts)
        self.doc_of = np.repeat(np.arange(len(firsts)), sizes)
        self.bits = max(1, words.bit_length())
        self.packed = 3 * self.bits <= 62  # an id (< words²) and a position fit in one int64 key
        self.top: dict[int, tuple[list[int], list[int]]] = {}  # n → per document (count, characters)
        self.dup: dict[int, tuple[list[bool], list[int]]] = {}  # n → per document (any repeat, characters covered)
        # n = 1: every occurrence of a repeated word (ascending) and its id; the later occurrences
        self.reps = np.flatnonzero(np.bincount(self.ids, minlength=words)[self.ids] > 1)
        self.rank = self.ids[self.reps]
        self.repeats = self.reps[self.rank != self.reps]
        for n in range(1, max(top_ns | dup_ns, default=0) + 1):
            if n > 1:
                self._next(n)
            if n in top_ns:
                self.top[n] = self._top(n)
            if n in dup_ns:
                self.dup[n] = self._covered(n)

    def _next(self, n: int) -> None:
        reps = self.reps
        follows = reps[1:] == reps[:-1] + 1  # the (n-1)-gram one word on repeats too
        if n == 2:  # and is in the same document
            start = np.zeros(self.words + 1, dtype=bool)
            start[self.offsets] = True
            follows &= ~start[reps[1:]]
        candidates = reps[:-1][follows]
        keys = self.rank[:-1][follows] * self.words + self.ids[candidates + n - 1]
        if self.packed:
            packed = np.sort((keys << self.bits) | candidates)
            grams, positions = packed >> self.bits, packed & ((1 << self.bits) - 1)
        else:  # too many words for the packed key
            order = np.lexsort((candidates, keys))
            grams, positions = keys[order], candidates[order]
        starts = np.empty(len(grams), dtype=bool)
        starts[:1] = True
        np.not_equal(grams[1:], grams[:-1], out=starts[1:])
        groups = np.cumsum(starts)
        many = np.bincount(groups)[groups] > 1
        rank = np.zeros(self.words, dtype=np.int64)  # back in position order, without a sort
        rank[positions[many]] = groups[many]
        self.reps = np.flatnonzero(rank)
        self.rank = rank[self.reps]
        self.repeats = np.sort(positions[~starts])  # every occurrence after an n-gram's first

    def _top(self, n: int) -> tuple[list[int], list[int]]:
        top = np.ones(self.documents, dtype=np.int64)
        chars = np.zeros(self.documents, dtype=np.int64)
        if len(self.reps):
            counts = np.bincount(self.rank)[self.rank]  # per occurrence, its n-gram's count
            docs = self.doc_of[self.reps]
            first = np.flatnonzero(np.r_[True, docs[1:] != docs[:-1]])
            top[docs[first]] = np.maximum.reduceat(counts, first)
            hit = np.flatnonzero(counts == top[docs])
            earliest = hit[np.r_[True, docs[hit[1:]] != docs[hit[:-1]]]]  # occurrences are in position order
            at = self.reps[earliest]
            chars[docs[earliest]] = self.chars[at + n] - self.chars[at]
        return top.tolist(), chars.tolist()

    def _covered(self, n: int) -> tuple[list[bool], list[int]]:
        """Per document: whether an n-gram repeats, and the characters of the words inside repeats."""
        starts = self.repeats  # ascending; each covers words [start, start + n), within its document
        if len(starts) == 0:
            return [False] * self.documents, [0] * self.documents
        ends = np.maximum.accumulate(starts + n)
        new = np.r_[True, starts[1:] >= ends[:-1]]  # a run of overlapping repeats begins
        first, last = np.flatnonzero(new), np.r_[np.flatnonzero(new)[1:] - 1, len(starts) - 1]
        chars = self.chars[ends[last]] - self.chars[starts[first]]
        docs = self.doc_of[starts[first]]
        covered = np.bincount(docs, weights=chars, minlength=self.documents).astype(np.int64)  # exact below 2**53
        return (np.bincount(docs, minlength=self.documents) > 0).tolist(), covered.tolist()


class Words:
    """A document's words as numpy arrays, from one C pass over its text (`_kernels.word_ids`): a Python
    loop over the words would cost more than all the rules. Per word, `ids` (the index of its first
    occurrence: an exact id, no hash) and `lengths`; per distinct word, in order of first occurrence,
    `positions` (its first index), `classes` (bit 0: has a letter, re's `[^\\W\\d_]`; bit 1: has a
    letter or digit) and `hashes` (64-bit, the same for the same word in any text)."""

    FIELDS = (("ids", np.int64), ("lengths", np.int64), ("positions", np.int64), ("classes", np.uint8), ("hashes", np.uint64))

    def __init__(self, found: tuple[bytes, ...]):
        for (name, dtype), data in zip(self.FIELDS, found):
            setattr(self, name, np.frombuffer(data, dtype=dtype))

    @classmethod
    def of(cls, text: str, by_chars: bool, min_words: int = 1) -> Words | None:
        """None below `min_words` words."""
        found = _kernels.word_ids(text, by_chars, min_words)
        return None if found is None else cls(found)


def _duplicate_fractions(items: list[str]) -> tuple[float, float]:
    """Share of items that repeat an earlier one, and share of characters in them."""
    distinct = set(items)
    total_chars = sum(map(len, items))
    dup_chars = total_chars - sum(map(len, distinct))  # equal items have equal lengths: all but one copy of each
    return (len(items) - len(distinct)) / max(len(items), 1), dup_chars / max(total_chars, 1)


class QualityRules:
    """Gopher + FineWeb rules for one language; `check(text)` returns None (keep) or a drop reason."""

    def __init__(self, settings: dict[str, Any]):
        self.s = settings
        self.stopwords = set(settings.get("stopwords") or [])
        single = sorted(w for w in self.stopwords if w.split() == [w])  # one with a space inside is never a word
        found = Words.of(" ".join(single), False) if single else None
        self.stop_hashes = np.sort(found.hashes) if found else np.zeros(0, dtype=np.uint64)
        self.by_chars = settings.get("words") == "chars"
        self.top_ns = {n for n, _ in settings["top_n_grams"]}
        self.dup_ns = {n for n, _ in settings["dup_n_grams"]}

    def words(self, text: str) -> list[str]:
        return [c for c in text if not c.isspace()] if self.by_chars else text.split()

    def check(self, text: str) -> str | None:
        return check_documents([(self, text)])[0]

    def _structure(self, text: str) -> str | tuple:
        """Gopher quality, then paragraph and line repetition: a drop reason, or what the later rules need."""
        s = self.s
        words = Words.of(text, self.by_chars, s["min_doc_words"])
        if words is None:  # fewer non-symbol words still
            return "gopher_too_few_words"
        n_words = len(words.ids)
        occurs = np.bincount(words.ids, minlength=n_words)  # at each word's first position, how often it occurs
        # word classes are decided once per distinct word, counted by their occurrences
        no_letter = words.positions[(words.classes & 1) == 0]
        symbols = words.positions[words.classes == 0]
        n_symbols = int(occurs[symbols].sum())
        n_non_symbol = n_words - n_symbols
        if n_non_symbol < s["min_doc_words"]:
            return "gopher_too_few_words"
        if n_non_symbol > s["max_doc_words"]:
            return "gopher_too_many_words"
        if not self.by_chars:
            mean = (int(words.lengths.sum()) - int((words.lengths[symbols] * occurs[symbols]).sum())) / n_non_symbol
            if mean < s["min_avg_word_length"]:
                return "gopher_short_words"
            if mean > s["max_avg_word_length"]:
                return "gopher_long_words"
        if (text.count("#") + text.count("...") + text.count("…")) / n_words > s["max_symbol_word_ratio"]:
            return "gopher_symbol_ratio"
        stripped = list(filter(None, map(str.strip, text.split("\n"))))  # the non-blank lines
        lines = len(stripped)
        if sum(map(str.startswith, stripped, repeat(BULLETS))) / lines > s["max_bullet_lines_ratio"]:
            return "gopher_bullet_lines"
        if sum(map(str.endswith, stripped, repeat(("...", "…")))) / lines > s["max_ellipsis_lines_ratio"]:
            return "gopher_ellipsis_lines"
        if (n_words - int(occurs[no_letter].sum())) / n_words < s["max_non_alpha_words_ratio"]:
            return "gopher_non_alpha_words"
        if s.get("min_stop_words", 0) and not self._enough_stopwords(text, words, occurs):
            return "gopher_too_few_stopwords"
        # Gopher repetition: paragraphs, lines (n-grams follow, for a batch of documents at once)
        frac, chars = _duplicate_fractions(list(filter(str.strip, text.split("\n\n"))))
        if frac > s["dup_para_frac"]:
            return "gopher_dup_paragraphs"
        if chars > s["dup_para_char_frac"]:
            return "gopher_dup_paragraph_chars"
        frac, dup_line_chars = _duplicate_fractions(stripped)
        if frac > s["dup_line_frac"]:
            return "gopher_dup_lines"
        if dup_line_chars > s["dup_line_char_frac"]:
            return "gopher_dup_line_chars"
        return n_words, (words.ids, words.lengths), stripped, dup_line_chars

    def _finish(self, text: str, n_words: int, stripped: list[str], dup_line_chars: float,
                repetition: Repetition, d: int) -> str | None:
        """Top and duplicated n-grams (document `d` of `repetition`), then FineWeb's line rules."""
        s = self.s
        total = repetition.totals[d]
        for n, limit in s["top_n_grams"]:
            if n_words < n:
                break
            top, chars = repetition.top[n][0][d], repetition.top[n][1][d]  # of equally frequent n-grams, the first to occur
            if top > 1 and chars * top / total > limit:
                return f"gopher_top_{n}gram"
        smallest_limit = min(limit for _, limit in s["dup_n_grams"])
        for n, limit in s["dup_n_grams"]:
            if n_words < n:
                break
            if not repetition.dup[n][0][d]:
                break  # no repeated n-gram: no longer one either
            fraction = repetition.dup[n][1][d] / total
            if fraction > limit:
                return f"gopher_dup_{n}gram"
            if fraction <= smallest_limit:  # longer n-grams repeat no more than shorter ones
                break
        lines = len(stripped)
        if sum(map(str.endswith, stripped, repeat(TERMINAL_PUNCTUATION))) / lines < s["line_punct_thr"]:
            return "fineweb_line_punctuation"
        if sum(map(s["short_line_length"].__ge__, map(len, stripped))) / lines >= s["short_line_thr"]:
            return "fineweb_short_lines"
        if dup_line_chars * sum(map(len, stripped)) / max(len(text.replace("\n", "")), 1) > s["char_duplicates_ratio"]:
            return "fineweb_dup_line_chars"
        if text.count("\n") / n_words > s["new_line_ratio"]:
            return "fineweb_list_ratio"
        return None

    def _enough_stopwords(self, text: str, words: Words, occurs: np.ndarray) -> bool:
        """At least `min_stop_words` stopwords among the words, case-insensitive: the exact-case count (the
        distinct words whose 64-bit hash is a stopword's: a false match has odds of 2⁻⁶⁴ a pair) settles
        most documents, the lower-cased words the others."""
        need = self.s["min_stop_words"]
        if len(self.stop_hashes):
            at = np.minimum(np.searchsorted(self.stop_hashes, words.hashes), len(self.stop_hashes) - 1)
            if int(occurs[words.positions[self.stop_hashes[at] == words.hashes]].sum()) >= need:
                return True
        return sum(map(self.stopwords.__contains__, map(str.lower, self.words(text)))) >= need


def check_documents(items: list[tuple[QualityRules, str]], max_words: int = 1 << 19) -> list[str | None]:
    """The drop reason (None: keep) of each (rules, text); the n-gram rules run on up to `max_words` words at once."""
    reasons: list[str | None] = [None] * len(items)
    waiting: list[tuple[int, tuple]] = []
    for i, (rules, text) in enumerate(items):
        result = rules._structure(text)
        if isinstance(result, str):
            reasons[i] = result
        else:
            waiting.append((i, result))
    while waiting:
        size, k = 0, 0
        while k < len(waiting) and (k == 0 or size + waiting[k][1][0] <= max_words):
            size += waiting[k][1][0]
            k += 1
        batch, waiting = waiting[:k], waiting[k:]
        top_ns = set().union(*(items[i][0].top_ns for i, _ in batch))
        dup_ns = set().union(*(items[i][0].dup_ns for i, _ in batch))
        firsts, lengths = zip(*(found[1] for _, found in batch))  # each document's word ids and word lengths
        repetition = Repetition(list(firsts), list(lengths), top_ns, dup_ns)
        for d, (i, (n_words, _, stripped, dup_line_chars)) in enumerate(batch):
            rules, text = items[i]
            reasons[i] = rules._finish(text, n_words, stripped, dup_line_chars, repetition, d)
    return reasons
