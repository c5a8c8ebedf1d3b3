"""The model's shape (`LlamaConfig`) and the recipe's `model:` section (a named preset plus overrides).

Kept free of torch so that loading and validating a recipe stays fast; `fournil.model.llama`
re-exports `LlamaConfig`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from pydantic import Field, field_validator, model_validator

from fournil.errors import FournilError
from fournil.schema import Section


@dataclass
class LlamaConfig:
    """Every number that fixes a model's architecture; `fournil.model.llama.Llama` builds it."""

    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_dim: int
    context_length: int
    rope_base: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = False
    qk_norm: bool = False
    alibi: bool = False  # BLOOM: linear attention biases instead of RoPE
    embedding_norm: bool = False  # BLOOM: a LayerNorm right after the token embeddings
    layer_norm: bool = False  # BLOOM: LayerNorm (with a bias) instead of RMSNorm in every block and at the end
    gelu_mlp: bool = False  # BLOOM: a two-matrix GELU (tanh) MLP instead of SwiGLU
    bias: bool = False  # BLOOM: biases on the attention and MLP projections (not on the output head)
    init_std: float = 0.02
    zero_init_out: bool = False  # the attention output and FFN down projections start at zero (modded-nanogpt); only an init

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            kind = {"int": int, "float": float, "bool": bool}[field.type]
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
                setattr(self, field.name, value)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise FournilError(f"model field {field.name} = {value!r}: expected {field.type}")
            if kind is not bool and value <= 0:
                raise FournilError(f"model field {field.name} = {value!r}: must be > 0")
        if self.dim % self.n_heads:
            raise FournilError(f"model: dim {self.dim} is not a multiple of n_heads {self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise FournilError(f"model: n_heads {self.n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}")
        if self.head_dim % 2:
            raise FournilError(f"model: head size dim/n_heads = {self.head_dim} must be even for RoPE")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LlamaConfig:
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(allowed))
        if unknown:
            raise FournilError(f"model config: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
        missing = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING and f.name not in d]
        if missing:
            raise FournilError(f"model config: missing field(s) {', '.join(missing)}")
        return cls(**d)


class ModelSection(Section):
    preset: str = Field("tiny", description="a named shape from fournil.model.presets (tiny, ttl-160m, croissant-1.3b, ...)")
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="preset fields to change, e.g. {n_layers: 4}; the vocabulary size comes from the tokenizer"
    )

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, preset: str) -> str:
        from fournil.model.presets import PRESETS

        if preset not in PRESETS:
            raise ValueError(f"unknown preset; choose one of {', '.join(PRESETS)}")
        return preset

    @field_validator("overrides")
    @classmethod
    def _known_fields(cls, overrides: dict[str, Any]) -> dict[str, Any]:
        allowed = [f.name for f in dataclasses.fields(LlamaConfig) if f.name != "vocab_size"]
        if "vocab_size" in overrides:
            raise ValueError("vocab_size comes from the tokenizer; set tokenizer.vocab_size instead")
        unknown = sorted(set(overrides) - set(allowed))
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
        return overrides

    @model_validator(mode="after")
    def _valid_shape(self) -> ModelSection:
        from fournil.model.presets import PRESETS, model_config

        try:
            model_config(self, PRESETS[self.preset].vocab_size)
        except FournilError as error:
            raise ValueError(str(error)) from None
        return self
