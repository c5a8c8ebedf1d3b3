"""Self-Instruct's filters, made multilingual.

Words are counted with the script-agnostic tokenizer of `fournil.evaluate.metrics` (accented and
non-Latin letters kept; rouge_score's default keeps only [a-z0-9], so "Écris une lettre à ta sœur"
and "Écris une lettre à ton frère" would share too few tokens to be caught). ROUGE-L is measured
against every kept instruction of the language, seeds included, with a bit-parallel LCS (one
big-integer step per word), after a length bound that skips pairs too unequal to reach the best so far.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fournil.evaluate.metrics import words


def positions(ids: list[int]) -> dict[int, int]:
    """Token id → bit mask of its positions, for `lcs_length`."""
    masks: dict[int, int] = {}
    for i, token in enumerate(ids):
        masks[token] = masks.get(token, 0) | 1 << i
    return masks


def lcs_length(masks: dict[int, int], length: int, other: list[int]) -> int:
    """Longest common subsequence of a sequence (given by its `positions` and length) and `other`,
    bit-parallel (Hyyrö 2004): one big-integer step per token of `other` instead of a row of the table."""
    full = (1 << length) - 1
    v = full
    for token in other:
        u = v & masks.get(token, 0)
        v = ((v + u) | (v - u)) & full
    return length - v.bit_count()


@dataclass
class SimilarityPool:
    """The kept instructions of one language, for ROUGE-L F1 against a new one."""

    vocabulary: dict[str, int] = field(default_factory=dict)
    entries: list[tuple[str, int, dict[int, int]]] = field(default_factory=list)

    def _ids(self, text: str) -> list[int]:
        return [self.vocabulary.setdefault(w, len(self.vocabulary)) for w in words(text)]

    def closest(self, text: str, threshold: float) -> tuple[float, str | None]:
        """(the highest ROUGE-L F1, its id); stops at the first score ≥ threshold."""
        ids = self._ids(text)
        best, best_id = 0.0, None
        for entry_id, length, masks in self.entries:
            total = len(ids) + length
            if not total or 2 * min(len(ids), length) / total <= best:
                continue
            score = 2 * lcs_length(masks, length, ids) / total
            if score > best:
                best, best_id = score, entry_id
                if best >= threshold:
                    break
        return best, best_id

    def add(self, entry_id: str, text: str) -> None:
        ids = self._ids(text)
        self.entries.append((entry_id, len(ids), positions(ids)))


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
