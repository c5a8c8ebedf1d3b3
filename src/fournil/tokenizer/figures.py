"""The tokenizer stage's figures (its manifest's `figures`), read by the release by these names."""

from __future__ import annotations

from fournil.schema import Figures


class LanguageTokens(Figures):
    """How fournil's tokenizer cuts one language's held-out text."""

    fertility: float | None = None
    split_word_share: float | None = None
    bytes_per_token: float | None = None
    chars_per_token: float | None = None
    parity_vs_en: float | None = None
    words: int | None = None
    tokens: int | None = None


class SpecialTokens(Figures):
    bos: int | None = None
    eos: int | None = None
    pad: int | None = None
    im_start: int | None = None
    im_end: int | None = None


class TokenizerFigures(Figures):
    vocab_size: int | None = None
    sha256: str | None = None  # of tokenizer.json
    special_tokens: SpecialTokens | None = None
    per_language: dict[str, LanguageTokens] | None = None
    sample_chars_per_language: dict[str, int] | None = None  # the training sample; empty when reused after an interruption
    references: dict[str, dict[str, float | None]] | None = None  # reference tokenizer → language → fertility
    train_seconds: float | None = None
