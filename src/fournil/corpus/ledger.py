"""Accounting: per step, language and source, what was read, kept, dropped (by reason) or created.

Every step records each document it reads and exactly one outcome for it (kept or dropped with a
reason), so read = kept + dropped holds by construction; documents a step makes (paragraphs routed
to another language) are counted as `created` and are read by the next step. Ledgers of shards
merge by addition, so the accounting of a cluster run is the sum of its tasks. The examples of a
reason are the ones with the smallest ids, not the first seen, so they do not depend on how files
were spread over tasks either.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

EXAMPLE_CHARS = 300


def _cell() -> dict[str, Any]:
    return {"read": [0, 0], "kept": [0, 0], "created": {}, "dropped": {}, "moved": {}, "counts": {}}


class Ledger:
    """Counts of [documents, characters] by step → language → source."""

    def __init__(self, examples_per_reason: int = 3):
        self.examples_per_reason = examples_per_reason
        self.steps: dict[str, dict[str, dict[str, dict]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(_cell)))
        self.examples: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
        self.order: list[str] = []

    def _cell(self, step: str, lang: str, source: str) -> dict:
        if step not in self.order:
            self.order.append(step)
        return self.steps[step][lang][source]

    def read(self, step: str, lang: str, source: str, chars: int) -> None:
        _add(self._cell(step, lang, source)["read"], chars)

    def keep(self, step: str, lang: str, source: str, chars: int) -> None:
        _add(self._cell(step, lang, source)["kept"], chars)

    def create(self, step: str, lang: str, source: str, chars: int, why: str) -> None:
        _add(self._cell(step, lang, source)["created"].setdefault(why, [0, 0]), chars)

    def move(self, step: str, lang: str, source: str, chars: int, to: str) -> None:
        """A kept document that leaves this language for another (it is counted as kept here)."""
        _add(self._cell(step, lang, source)["moved"].setdefault(to, [0, 0]), chars)

    def count(self, step: str, lang: str, source: str, what: str, n: int) -> None:
        """Events inside kept documents (e.g. e-mail addresses replaced)."""
        if n:
            counts = self._cell(step, lang, source)["counts"]
            counts[what] = counts.get(what, 0) + n

    def drop(self, step: str, lang: str, source: str, chars: int, reason: str, doc_id: str = "", text: str = "") -> None:
        _add(self._cell(step, lang, source)["dropped"].setdefault(reason, [0, 0]), chars)
        self._example(step, reason, {"id": doc_id, "lang": lang, "source": source, "text": text[:EXAMPLE_CHARS]})

    def _example(self, step: str, reason: str, example: dict) -> None:
        """Keep `example` if it is among the `examples_per_reason` smallest by (id, source, text)."""
        examples = self.examples[step][reason]
        key = _example_key(example)
        if len(examples) >= self.examples_per_reason and (not examples or key >= _example_key(examples[-1])):
            return
        examples.append(example)
        examples.sort(key=_example_key)
        del examples[self.examples_per_reason:]

    def to_dict(self) -> dict:
        return {
            "order": list(self.order),
            "steps": {s: {l: dict(srcs) for l, srcs in langs.items()} for s, langs in self.steps.items()},
            "examples": {s: dict(r) for s, r in self.examples.items()},
        }

    def merge(self, data: dict) -> None:
        """Add the counts of another ledger's `to_dict()`."""
        for step in data["order"]:
            if step not in self.order:
                self.order.append(step)
        for step, langs in data["steps"].items():
            for lang, sources in langs.items():
                for source, cell in sources.items():
                    mine = self.steps[step][lang][source]
                    _add_pair(mine["read"], cell["read"])
                    _add_pair(mine["kept"], cell["kept"])
                    for key in ("created", "dropped", "moved"):
                        for why, pair in cell[key].items():
                            _add_pair(mine[key].setdefault(why, [0, 0]), pair)
                    for what, n in cell["counts"].items():
                        mine["counts"][what] = mine["counts"].get(what, 0) + n
        for step, reasons in data["examples"].items():
            for reason, examples in reasons.items():
                for example in examples:
                    self._example(step, reason, example)

    def unbalanced(self) -> list[str]:
        """Cells where read != kept + dropped (in documents); empty when the books balance."""
        problems = []
        for step, langs in self.steps.items():
            for lang, sources in langs.items():
                for source, cell in sources.items():
                    dropped = sum(pair[0] for pair in cell["dropped"].values())
                    if cell["read"][0] != cell["kept"][0] + dropped:
                        problems.append(f"{step}/{lang}/{source}: read {cell['read'][0]} != kept {cell['kept'][0]} + dropped {dropped}")
        return problems

    def funnel(self) -> list[dict]:
        """Per step, totals and per-language figures: read, kept, created and dropped by reason (documents, characters)."""
        steps = []
        for step in self.order:
            per_language = {}
            for lang, sources in sorted(self.steps[step].items()):
                total = _cell()
                for cell in sources.values():
                    _add_pair(total["read"], cell["read"])
                    _add_pair(total["kept"], cell["kept"])
                    for key in ("created", "dropped", "moved"):
                        for why, pair in cell[key].items():
                            _add_pair(total[key].setdefault(why, [0, 0]), pair)
                    for what, n in cell["counts"].items():
                        total["counts"][what] = total["counts"].get(what, 0) + n
                per_language[lang] = _named(total)
            summed = {"documents_read": 0, "characters_read": 0, "documents_kept": 0, "characters_kept": 0,
                      "dropped": {}, "created": {}, "moved": {}, "counts": {}}
            for figures in per_language.values():
                for key in ("documents_read", "characters_read", "documents_kept", "characters_kept"):
                    summed[key] += figures[key]
                for what, n in figures["counts"].items():
                    summed["counts"][what] = summed["counts"].get(what, 0) + n
                for key in ("dropped", "created", "moved"):
                    for why, pair in figures[key].items():
                        into = summed[key].setdefault(why, {"documents": 0, "characters": 0})
                        into["documents"] += pair["documents"]
                        into["characters"] += pair["characters"]
            steps.append({"step": step, **summed, "per_language": per_language})
        return steps


def _example_key(example: dict) -> tuple[str, str, str]:
    return str(example.get("id", "")), str(example.get("source", "")), str(example.get("text", ""))


def _add(pair: list[int], chars: int) -> None:
    pair[0] += 1
    pair[1] += chars


def _add_pair(pair: list[int], other: list[int]) -> None:
    pair[0] += other[0]
    pair[1] += other[1]


def _named(cell: dict) -> dict:
    def both(pair: list[int]) -> dict:
        return {"documents": pair[0], "characters": pair[1]}

    return {
        "documents_read": cell["read"][0], "characters_read": cell["read"][1],
        "documents_kept": cell["kept"][0], "characters_kept": cell["kept"][1],
        "dropped": {why: both(p) for why, p in sorted(cell["dropped"].items())},
        "created": {why: both(p) for why, p in sorted(cell["created"].items())},
        "moved": {to: both(p) for to, p in sorted(cell["moved"].items())},
        "counts": dict(sorted(cell["counts"].items())),
    }
