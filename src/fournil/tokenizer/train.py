"""Byte-level BPE with Hugging Face `tokenizers`: no normaliser, so decode(encode(x)) == x for any string.

The pre-tokenizer is one that llama.cpp implements by name (`src/llama-vocab.cpp`, `tokenizer.ggml.pre`
in a GGUF), so a released model is split the same way by `tokenizers`, transformers and llama.cpp.
By default it is Llama-3's pattern, `llama-bpe`: digits in groups of up to three, letters without
combining marks; llama.cpp encodes a word that is whole in the vocabulary as that token
(`ignore_merges`), so the model here does too. It meets the tokenizer's fairness targets in French
and English (docs/tokenizer.md). Qwen3.5's pattern, `qwen35`, keeps accents and combining marks
(`\\p{M}`) with their letters (decomposed Latin text, Devanagari's vowel signs) and makes every digit
its own token; it costs 0.6–0.8% more tokens on the shipped languages. Neither keeps an elided article
apart (« l'été » is « l » « 'été »), nor lets a space join the digit after it (« ␣2024 » starts with a
lone « ␣ »).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from fournil.tokenizer import SPECIAL_TOKENS
from fournil.tokenizer.config import TokenizerConfig


@dataclass(frozen=True)
class PreTokenizer:
    """A llama.cpp pre-tokenizer: its name there, the regex of its tokenizer.json, and whether BPE skips
    the merges for a word already in the vocabulary."""

    name: str
    regex: str
    ignore_merges: bool


# The regexes as the models' own tokenizer.json files give them (llama.cpp quotes them in llama-vocab.cpp).
QWEN35 = PreTokenizer(
    "qwen35",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    ignore_merges=False,
)
LLAMA3 = PreTokenizer(
    "llama-bpe",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    ignore_merges=True,
)
LLAMA_CPP = {p.regex: p for p in (QWEN35, LLAMA3)}
BY_NAME = {p.name: p for p in (QWEN35, LLAMA3)}


def new_tokenizer(pre_tokenizer: str = "llama-bpe") -> Tokenizer:
    """An untrained byte-level BPE tokenizer with llama.cpp's pre-tokenizer (by its name) and fournil's special tokens."""
    pre = BY_NAME[pre_tokenizer]
    tokenizer = Tokenizer(models.BPE(ignore_merges=pre.ignore_merges))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pre.regex), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def train_tokenizer(texts: Iterable[str], config: TokenizerConfig) -> Tokenizer:
    """Train on `texts` (already balanced); special tokens get ids 0..15, then the 256 bytes."""
    tokenizer = new_tokenizer(config.pre_tokenizer)
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size,
        min_frequency=config.min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer
