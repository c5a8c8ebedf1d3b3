"""The mixture stage's figures (its manifest's `figures`), read by the release by these names."""

from __future__ import annotations

from fournil.schema import Figures


class LanguageMixture(Figures):
    documents: int | None = None
    tokens: int | None = None  # available in the shards
    planned_tokens: int | None = None  # the plan's share of the training budget
    share: float | None = None
    epochs: float | None = None
    max_group_epochs: float | None = None


class ParallelRead(Figures):
    pairs: int | None = None
    skipped: dict[str, int] | None = None  # malformed rows by reason


class MixtureFigures(Figures):
    per_language: dict[str, LanguageMixture] | None = None
    budget_tokens: int | None = None
    tokens: int | None = None
    groups: int | None = None
    stages: list[str] | None = None  # curriculum stage names
    dtype: str | None = None
    tokenizer_sha256: str | None = None
    encode_mb_per_s: float | None = None
    shards_encoded: int | None = None  # shards (groups) encoded by this run
    shards_kept: int | None = None  # shards kept from earlier work of the same lineage (a re-plan, a resumed run)
    skipped_documents: dict[str, int] | None = None
    parallel: dict[str, ParallelRead] | None = None
    canaries: int | None = None
    canary_insertions: int | None = None
