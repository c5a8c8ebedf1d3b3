"""The `mixture:` section of a recipe: how the training budget is split between languages and sources."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from fournil.schema import Section


class CurriculumStage(Section):
    """One stage of the curriculum: a share of the budget with its own language shares and weights."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    share: float = Field(gt=0, le=1, description="fraction of the training budget (in tokens) this stage takes")
    languages: dict[str, float] | None = Field(
        None, description="language → share of this stage's tokens (sum 1); default: the recipe's languages"
    )
    weights: dict[str, dict[str, float]] | None = Field(
        None, description="per language, weights by category or source; default: mixture.weights"
    )

    @field_validator("languages")
    @classmethod
    def _shares(cls, languages: dict[str, float] | None) -> dict[str, float] | None:
        if languages is not None:
            if any(v < 0 for v in languages.values()):
                raise ValueError("shares must be ≥ 0")
            if abs(sum(languages.values()) - 1) > 1e-6:
                raise ValueError(f"shares sum to {sum(languages.values()):g}; they must sum to 1")
        return languages


class CanaryConfig(Section):
    """Random strings planted in the training stream to measure memorisation (CroissantLLM)."""

    count: int = Field(2, ge=0, description="canaries per (length, repeat count); 0 plants none")
    lengths: list[int] = Field([32], min_length=1, description="canary lengths in tokens (at least this many)")
    repeats: list[int] = Field([1, 10, 100], min_length=1, description="how many times each canary appears in training")

    @field_validator("lengths", "repeats")
    @classmethod
    def _positive(cls, values: list[int]) -> list[int]:
        if any(v < 1 for v in values):
            raise ValueError("every value must be ≥ 1")
        return values


class MixtureConfig(Section):
    weights: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="per language, weight by source name or category (source name wins); a group's share of its "
        "language is ∝ weight × tokens^alpha; default weight 1 (times the source's own `weight`)",
    )
    alpha: float = Field(
        1.0, ge=0, le=1,
        description="temperature exponent within a language: 1 = natural proportions, 0 = the weights alone",
    )
    max_epochs: float = Field(4.0, gt=0, description="refuse a plan that repeats any group more than this")
    stages: list[CurriculumStage] = Field(
        default_factory=list, description="curriculum (PolyLM); shares sum to 1; default: one stage, the recipe's shares"
    )
    parallel_template: str = Field(
        "{src_lang}: {src}\n{tgt_lang}: {tgt}",
        description="how a translation pair becomes a document; {src_lang}/{tgt_lang} are language names",
    )
    canaries: CanaryConfig = CanaryConfig()
    encode_batch: int = Field(1000, ge=1, description="documents per call to the tokenizer while encoding shards")
    workers: int = Field(0, ge=0, description="encoding processes (one task per corpus file); 0 means one per core")
    executor: Literal["local", "slurm", "ray"] = Field("local", description="datatrove executor that runs the encoding tasks")
    executor_options: dict[str, Any] = Field(default_factory=dict, description="extra arguments for the Slurm/Ray executor, as for corpus.executor_options")

    @field_validator("parallel_template")
    @classmethod
    def _template(cls, template: str) -> str:
        try:
            template.format(src_lang="", tgt_lang="", src="", tgt="")
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(f"bad placeholder ({error}); use {{src_lang}}, {{tgt_lang}}, {{src}}, {{tgt}}") from None
        if "{src}" not in template or "{tgt}" not in template:
            raise ValueError("the template must contain {src} and {tgt}")
        return template

    @model_validator(mode="after")
    def _stage_shares(self) -> MixtureConfig:
        if self.stages and abs(sum(s.share for s in self.stages) - 1) > 1e-6:
            raise ValueError(f"stages: shares sum to {sum(s.share for s in self.stages):g}; they must sum to 1")
        return self
