"""Self-Instruct's filters, made multilingual.

Words are counted with the script-agnostic tokenizer of `fournil.evaluate.metrics` (accented and
non-Latin letters kept; rouge_score's default keeps only [a-z0-9], so "Écris une lettre à ta sœur"
and "Écris une lettre à ton frère" would share too few tokens to be caught). ROUGE-L is measured
against every kept instruction of the language, seeds included; two cheap upper bounds (length
ratio, shared-word count) skip most exact comparisons.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from fournil.evaluate.metrics import words


def lcs(a: list[int], b: list[int]) -> int:
    """Length of the longest common subsequence of two token-id lists."""
    if len(a) < len(b):
        a, b = b, a
    row = [0] * (len(b) + 1)
    for x in a:
        previous = 0
        for j, y in enumerate(b, 1):
            previous, row[j] = row[j], previous + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


@dataclass
class SimilarityPool:
    """The kept instructions of one language, for ROUGE-L F1 against a new one."""

    vocabulary: dict[str, int] = field(default_factory=dict)
    entries: list[tuple[str, list[int], Counter]] = field(default_factory=list)

    def _ids(self, text: str) -> list[int]:
        return [self.vocabulary.setdefault(w, len(self.vocabulary)) for w in words(text)]

    def closest(self, text: str, threshold: float) -> tuple[float, str | None]:
        """(the highest ROUGE-L F1, its id); stops at the first score ≥ threshold."""
        ids = self._ids(text)
        bag = Counter(ids)
        best, best_id = 0.0, None
        for entry_id, other, other_bag in self.entries:
            total = len(ids) + len(other)
            if not total or 2 * min(len(ids), len(other)) / total <= best:
                continue
            overlap = sum((bag & other_bag).values())
            if 2 * overlap / total <= best:
                continue
            score = 2 * lcs(ids, other) / total
            if score > best:
                best, best_id = score, entry_id
                if best >= threshold:
                    break
        return best, best_id

    def add(self, entry_id: str, text: str) -> None:
        ids = self._ids(text)
        self.entries.append((entry_id, ids, Counter(ids)))


def blacklisted(text: str, blacklist: tuple[str, ...]) -> str | None:
    """The first blacklist word or phrase found among the text's words (whole words, any case)."""
    tokens = words(text)
    joined = f" {' '.join(tokens)} "
    for entry in blacklist:
        phrase = " ".join(words(entry))
        if phrase and f" {phrase} " in joined:
            return entry
    return None


def letters(text: str) -> int:
    return sum(ch.isalpha() for ch in text)
