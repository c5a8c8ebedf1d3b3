"""The `tokenizer:` section of a recipe."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from fournil.schema import Section


class TokenizerConfig(Section):
    vocab_size: int = Field(32000, ge=512, le=262144, description="tokens in the vocabulary, special tokens included (8k–256k for real models, less for demos); token shards use uint32 above 65,535")
    shares: dict[str, float] | None = Field(
        None,
        description="share of the training sample per language (and `code` for documents of category code); "
        "default: equal shares for every recipe language, whatever the amount of text each has",
    )
    sample_chars: int = Field(20_000_000, ge=1000, description="characters in the training sample, all languages together; a language with less text is repeated")
    pre_tokenizer: Literal["llama-bpe", "qwen35"] = Field(
        "llama-bpe",
        description="llama.cpp's pre-tokenizer: llama-bpe (Llama-3's: digits by three) or qwen35 (Qwen3.5's: one token "
        "per digit, combining marks kept with their letters, for scripts such as Devanagari)",
    )
    min_frequency: int = Field(2, ge=1, description="pairs seen fewer times than this are never merged")
    eval_chars: int = Field(2_000_000, ge=1000, description="held-out characters per language used for the figures")
    eval_pairs: int = Field(5000, ge=1, description="parallel pairs per language used for parity against English")
    references: list[str] = Field(
        default_factory=list,
        description="reference tokenizers the report compares against: tokenizer.json, SentencePiece .model, "
        "tiktoken ranks (.tiktoken) or Mistral tekken .json; `name=path` names one",
    )

    @field_validator("shares")
    @classmethod
    def _shares(cls, shares: dict[str, float] | None) -> dict[str, float] | None:
        if shares is None:
            return None
        if not shares or any(v < 0 for v in shares.values()) or sum(shares.values()) <= 0:
            raise ValueError("give a positive share per language, e.g. {fr: 0.5, en: 0.5}")
        return shares
