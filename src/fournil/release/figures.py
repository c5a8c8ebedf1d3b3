"""The release stage's figures (its manifest's `figures`)."""

from __future__ import annotations

from fournil.schema import Figures


class TransparencyScore(Figures):
    met: int | None = None
    not_met: int | None = None
    needs_human: int | None = None
    total: int | None = None
    percent: float | None = None


class ReleaseFigures(Figures):
    parameters: int | None = None
    gguf: list[str] | None = None  # the GGUF files' names, when they were written
    format: str | None = None  # LlamaForCausalLM, BloomForCausalLM, or fournil (its own model folder)
    not_exported: str | None = None  # why transformers cannot load it, when format is fournil
    transparency: TransparencyScore | None = None
    missing_records: list[str] | None = None
    skipped_log_lines: dict[str, int] | None = None
    files: list[str] | None = None
