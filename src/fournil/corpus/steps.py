"""The per-document corpus steps, as datatrove filters that keep fournil's accounting.

Each step is a datatrove `BaseFilter` (so it also runs inside any datatrove pipeline and keeps
datatrove's own stats) whose `filter(doc)` returns True or (False, reason). `run` records every
document read and its outcome in a `Ledger`, by the language and source it had when read.
Documents carry `lang`, `source`, `category`, `license` and `priority` in their metadata.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.filters.base_filter import BaseFilter, get_filter_result

from fournil.corpus.decontaminate import Decontaminator
from fournil.corpus.harmful import HarmfulTerms
from fournil.corpus.langid import make_identifier, route_many
from fournil.corpus.ledger import Ledger
from fournil.corpus.normalise import normalise_text
from fournil.corpus.pii import scrub
from fournil.corpus.quality import QualityRules, check_documents, load_settings

BATCH_DOCUMENTS, BATCH_CHARS = 512, 2_000_000  # language ID and the quality rules read documents in batches of this size
CODE = "code"  # a source of this category is code: language ID and the prose quality rules pass it as it is


class CorpusStep(BaseFilter):
    """A filter whose every document is accounted for in `self.ledger`."""

    name = "corpus step"

    def __init__(self, ledger: Ledger | None = None):
        super().__init__()
        self.ledger = ledger or Ledger()

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for batch in batches(data):
            sizes = [len(doc.text) for doc in batch]  # before `filter`, which may rewrite the text
            with self.track_time("batch"):
                results = self.outcomes(batch)
            dropped = Counter()
            for doc, chars, (keep, reason) in zip(batch, sizes, results):
                lang, source = doc.metadata["lang"], doc.metadata["source"]
                self.ledger.read(self.name, lang, source, chars)
                if keep:
                    self.ledger.keep(self.name, lang, source, len(doc.text))
                    yield doc
                else:
                    self.ledger.drop(self.name, lang, source, chars, reason or "dropped", doc.id, doc.text)
                    dropped[reason] += 1
            self.count_outcomes(len(batch), dropped)

    def outcomes(self, batch: list[Document]) -> list[tuple[bool, str | None]]:
        """(keep, reason) for each document; a step that decides a whole batch at once overrides this."""
        return [get_filter_result(self.filter(doc)) for doc in batch]

    def count_outcomes(self, total: int, dropped: Counter) -> None:
        """datatrove's stats of a batch at once (one update per figure, not per document: they cost more than most filters)."""
        self.stat_update("total", value=total, unit="batch")
        self.stat_update("forwarded", value=total - sum(dropped.values()), unit="batch")
        self.stat_update("dropped", value=sum(dropped.values()), unit="batch")
        for reason, n in dropped.items():
            self.stat_update(f"dropped_{reason}", value=n, unit="batch")


class Normalise(CorpusStep):
    name = "normalise"

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        doc.text = normalise_text(doc.text)
        return True if doc.text else (False, "empty_after_normalisation")


class LanguageID(CorpusStep):
    """Identify each document's language and score; route paragraphs in other recipe languages."""

    name = "language_id"

    def __init__(self, languages: list[str], options: dict, thresholds: dict[str, float], ledger: Ledger | None = None):
        super().__init__(ledger)
        self.languages = languages
        self.options = options
        self.thresholds = thresholds
        self._identifier = None

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        raise NotImplementedError("LanguageID routes documents; use run()")

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        batch: list[Document] = []
        chars = 0
        for doc in data:
            if doc.metadata.get("category") == CODE:  # its declared language stands (comments, names)
                lang, source, size = doc.metadata["lang"], doc.metadata["source"], len(doc.text)
                self.ledger.read(self.name, lang, source, size)
                self.ledger.keep(self.name, lang, source, size)
                yield doc
                continue
            batch.append(doc)
            chars += len(doc.text)
            if len(batch) >= BATCH_DOCUMENTS or chars >= BATCH_CHARS:
                yield from self._route(batch)
                batch, chars = [], 0
        yield from self._route(batch)

    def _route(self, batch: list[Document]) -> Iterator[Document]:
        """Identify a batch of documents at once (one vectorised pass over all their paragraphs)."""
        if not batch:
            return
        if self._identifier is None:
            self._identifier = make_identifier(tuple(self.languages), self.options["backend"], self.options.get("model_path"))
        o = self.options
        with self.track_time():
            results = route_many([doc.text for doc in batch], self._identifier, o["min_paragraph_chars"],
                                 o["max_paragraph_chars"], o["route_min_score"], o["route_paragraphs"], o["unidentified_below"])
        for doc, result in zip(batch, results):
            lang, source, chars = doc.metadata["lang"], doc.metadata["source"], len(doc.text)
            self.ledger.read(self.name, lang, source, chars)
            if result is None:
                self.ledger.drop(self.name, lang, source, chars, "no_language_signal", doc.id, doc.text)
                continue
            if result.score < self.thresholds[result.lang]:
                self.ledger.drop(self.name, lang, source, chars, f"low_language_score_{result.lang}", doc.id, doc.text)
                continue
            for target, (text, score) in result.moved.items():
                self.ledger.create(self.name, target, source, len(text), f"routed_from_{lang}")
                yield Document(text=text, id=f"{doc.id}#{target}",
                               metadata={**doc.metadata, "lang": target, "lang_score": round(score, 4), "routed_from": lang})
            if not result.text.strip():  # nothing left in the document's own language
                self.ledger.drop(self.name, lang, source, chars, "no_language_signal", doc.id, doc.text)
                continue
            if result.removed:
                self.ledger.count(self.name, lang, source, "unidentified_paragraphs", len(result.removed))
                self.ledger.count(self.name, lang, source, "unidentified_characters", sum(map(len, result.removed)))
            self.ledger.keep(self.name, lang, source, len(result.text))
            if result.lang != lang:
                self.ledger.move(self.name, lang, source, len(result.text), result.lang)
                doc.metadata["declared_lang"] = lang
            doc.text = result.text
            doc.metadata["lang"] = result.lang
            doc.metadata["lang_score"] = round(result.score, 4)
            yield doc


class QualityFilter(CorpusStep):
    """Gopher and FineWeb rules with each language's own settings, on batches of documents (the
    n-gram rules share their numpy calls across a batch)."""

    name = "quality"

    def __init__(self, settings_dir: str | None = None, ledger: Ledger | None = None):
        super().__init__(ledger)
        self.settings_dir = settings_dir
        self.rules: dict[str, QualityRules] = {}

    def _rules(self, lang: str) -> QualityRules:
        if lang not in self.rules:
            self.rules[lang] = QualityRules(load_settings(lang, Path(self.settings_dir) if self.settings_dir else None))
        return self.rules[lang]

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        reason = self._reasons([doc])[0]
        return True if reason is None else (False, reason)

    def _reasons(self, docs: list[Document]) -> list[str | None]:
        """None (keep) or the drop reason of each document; code passes (rules written for prose would drop it)."""
        prose = [i for i, doc in enumerate(docs) if doc.metadata.get("category") != CODE]
        reasons: list[str | None] = [None] * len(docs)
        for i, reason in zip(prose, check_documents([(self._rules(docs[i].metadata["lang"]), docs[i].text) for i in prose])):
            reasons[i] = reason
        return reasons

    def outcomes(self, batch: list[Document]) -> list[tuple[bool, str | None]]:
        return [(reason is None, reason) for reason in self._reasons(batch)]


class HarmfulFilter(CorpusStep):
    """Drop documents whose words are more than `max_share` listed harmful terms, by the document's language's list."""

    name = "harmful"

    def __init__(self, word_lists: dict[str, list[str]], max_share: float, ledger: Ledger | None = None):
        super().__init__(ledger)
        self.word_lists = word_lists
        self.max_share = max_share
        self._terms: dict[str, HarmfulTerms] = {}

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        lang = doc.metadata["lang"]
        if lang not in self.word_lists:
            return True
        if lang not in self._terms:
            self._terms[lang] = HarmfulTerms(self.word_lists[lang])
        hits, words = self._terms[lang].hits(doc.text)
        if hits:
            self.ledger.count(self.name, lang, doc.metadata["source"], "harmful_terms", hits)
        return (False, "harmful_words") if hits > self.max_share * max(words, 1) else True


class ScrubPII(CorpusStep):
    name = "pii"

    def filter(self, doc: Document) -> bool:
        doc.text, counts = scrub(doc.text)
        for what, n in counts.items():
            self.ledger.count(self.name, doc.metadata["lang"], doc.metadata["source"], what, n)
        return True


class Decontaminate(CorpusStep):
    name = "decontaminate"

    def __init__(self, paths: list[str], n: int, ledger: Ledger | None = None):
        super().__init__(ledger)
        self.paths = paths
        self.n = n
        self._checker: Decontaminator | None = None

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if self._checker is None:
            self._checker = Decontaminator([Path(p) for p in self.paths], self.n)
        benchmark = self._checker.benchmark(doc.text)
        return True if benchmark is None else (False, f"contaminated_{benchmark}")


def batches(data: Iterator[Document]) -> Iterator[list[Document]]:
    """Documents in batches of BATCH_DOCUMENTS or BATCH_CHARS, whichever comes first."""
    batch: list[Document] = []
    chars = 0
    for doc in data:
        batch.append(doc)
        chars += len(doc.text)
        if len(batch) >= BATCH_DOCUMENTS or chars >= BATCH_CHARS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def chain(data: Iterator[Document], steps: list[CorpusStep]) -> Iterator[Document]:
    for step in steps:
        data = step.run(data)
    return data
