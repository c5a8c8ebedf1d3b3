"""Named model shapes: the reference models' published configurations, and a tiny one for tests.

The vocabulary size of a preset is its reference's; a recipe's model takes the size of the
tokenizer it trained instead (`model_config`). `python -m fournil.model.presets` prints the table.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from fournil.errors import FournilError
from fournil.model.config import LlamaConfig

if TYPE_CHECKING:
    from fournil.model.config import ModelSection

PRESETS: dict[str, LlamaConfig] = {
    # tests and smoke runs: grouped-query attention on purpose, so every path is exercised
    "tiny": LlamaConfig(vocab_size=512, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=176, context_length=256),
    # TeenyTinyLlama (Corrêa et al. 2024), Brazilian Portuguese
    "ttl-160m": LlamaConfig(vocab_size=32000, dim=768, n_layers=12, n_heads=12, n_kv_heads=12, ffn_dim=3072,
                            context_length=2048, norm_eps=1e-6),
    "ttl-460m": LlamaConfig(vocab_size=32000, dim=1024, n_layers=24, n_heads=16, n_kv_heads=16, ffn_dim=4096,
                            context_length=2048, norm_eps=1e-6),
    # CroissantLLM (Faysse et al. 2024), French-English 1:1
    "croissant-1.3b": LlamaConfig(vocab_size=32000, dim=2048, n_layers=24, n_heads=16, n_kv_heads=16, ffn_dim=5504,
                                  context_length=2048),
    # PolyLM-1.7B's shape (Wei et al. 2023: d 2048, 24 layers, 16 heads, 256k vocabulary, shared embeddings),
    # in the Llama recipe its successors use: SwiGLU width 5504 has the parameters of its 8192-wide GELU MLP
    "polylm-1.7b": LlamaConfig(vocab_size=256000, dim=2048, n_layers=24, n_heads=16, n_kv_heads=16, ffn_dim=5504,
                               context_length=2048, tie_embeddings=True),
    # BLOOM-1b7 (BigScience 2022): ALiBi, a LayerNorm on the embeddings, LayerNorm and a biased 4×d GELU MLP
    # in the blocks, shared input and output embeddings, a 250,880-row embedding (its 250,680 tokens, padded)
    "bloom-1b7": LlamaConfig(vocab_size=250880, dim=2048, n_layers=24, n_heads=16, n_kv_heads=16, ffn_dim=8192,
                             context_length=2048, tie_embeddings=True, alibi=True, embedding_norm=True,
                             layer_norm=True, gelu_mlp=True, bias=True),
    # Lucie-7B (OpenLLM-France 2025), pretraining context; its long-context phase raised rope_base and context
    "lucie-7b": LlamaConfig(vocab_size=65024, dim=4096, n_layers=32, n_heads=32, n_kv_heads=8, ffn_dim=12288,
                            context_length=4096, rope_base=500000.0),
}


def count_params(config: LlamaConfig, non_embedding: bool = False) -> int:
    """Parameters of a model of this shape, without building it (equals `Llama.num_params`).

    `non_embedding` leaves out the token embedding and output head matrices (Kaplan et al.'s N).
    """
    d, hd, f = config.dim, config.head_dim, config.ffn_dim
    norm = 2 * d if config.layer_norm else d  # LayerNorm has a bias
    attn = d * hd * (2 * config.n_heads + 2 * config.n_kv_heads) + (2 * hd if config.qk_norm else 0)
    mlp = (2 if config.gelu_mlp else 3) * d * f
    if config.bias:
        attn += hd * (config.n_heads + 2 * config.n_kv_heads) + d
        mlp += f + d
    layer = attn + mlp + 2 * norm
    body = config.n_layers * layer + norm + (2 * d if config.embedding_norm else 0)
    if non_embedding:
        return body
    return body + config.vocab_size * d * (1 if config.tie_embeddings else 2)


def model_config(section: ModelSection, vocab_size: int) -> LlamaConfig:
    """The recipe's model: its preset with the overrides applied and the tokenizer's vocabulary size."""
    if section.preset not in PRESETS:
        raise FournilError(f"model.preset = {section.preset!r}: unknown preset; choose one of {', '.join(PRESETS)}")
    allowed = [f.name for f in dataclasses.fields(LlamaConfig) if f.name != "vocab_size"]
    if "vocab_size" in section.overrides:
        raise FournilError("model.overrides.vocab_size: the vocabulary size comes from the tokenizer; set tokenizer.vocab_size instead")
    unknown = sorted(set(section.overrides) - set(allowed))
    if unknown:
        raise FournilError(f"model.overrides: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    return dataclasses.replace(PRESETS[section.preset], **section.overrides, vocab_size=vocab_size)


def _table() -> str:
    lines = [f"{'preset':<16}{'layers':>7}{'dim':>6}{'heads':>6}{'kv':>4}{'ffn':>7}{'ctx':>6}{'vocab':>8}{'params':>10}{'non-emb':>10}"]
    for name, c in PRESETS.items():
        lines.append(f"{name:<16}{c.n_layers:>7}{c.dim:>6}{c.n_heads:>6}{c.n_kv_heads:>4}{c.ffn_dim:>7}{c.context_length:>6}"
                     f"{c.vocab_size:>8}{count_params(c) / 1e6:>9.1f}M{count_params(c, True) / 1e6:>9.1f}M")
    return "\n".join(lines)


if __name__ == "__main__":
    print(_table())
