"""The `evaluate:` section of a recipe."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fournil.schema import Section

SHIPPED_TASKS = [
    *(f"{kind}_{lang}" for lang in ("en", "fr", "de", "es", "it", "pt") for kind in ("continuation", "minimal_pairs")),
    *(f"translation_{a}_{b}" for lang in ("fr", "de", "es", "it", "pt") for a, b in (("en", lang), (lang, "en"))),
]  # every task in src/fournil/evaluate/shipped/; a recipe runs those in its languages


class Reference(Section):
    """A reference system's published scores, shown beside the model's in the card and report."""

    name: str = Field(description="the system, e.g. TeenyTinyLlama-460m")
    source: str | None = Field(None, description="where the figures are published (paper, model card)")
    scores: dict[str, float] = Field(default_factory=dict, description="task name → published score, in the unit the paper gives")


class EvaluateConfig(Section):
    max_docs_per_language: int = Field(200, ge=1, description="held-out documents scored per language for bits per byte")
    batch_size: int = Field(8, ge=1, description="windows or prompts per forward pass")
    stride: int | None = Field(None, ge=1, description="new tokens scored per window on long documents; default half the context")
    checkpoints: Literal["final", "all"] = Field(
        "final", description="'final' evaluates train/final; 'all' also every kept checkpoint, for curves over tokens seen")
    tasks: list[str] = Field(
        default_factory=lambda: list(SHIPPED_TASKS),
        description="tasks to run: names of shipped tasks (src/fournil/evaluate/shipped/<name>.yaml) or paths to lm-evaluation-harness "
                    "task YAML files with local data; shipped tasks in languages outside the recipe are skipped")
    num_fewshot: int | None = Field(None, ge=0, description="few-shot examples for every task; default each task's own num_fewshot (0 if unset)")
    max_examples: int | None = Field(100, ge=1, description="examples scored per task (the first N of the test split); null for all")
    seed: int = Field(1234, description="seed of the few-shot sampler")
    max_new_tokens: int = Field(64, ge=1, description="generated tokens per example at most, in generate_until tasks (caps their max_gen_toks)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where to score: auto is the GPU when one is visible (bf16 autocast there), else the CPU (float32)")
    reference: Reference | None = Field(None, description="a reference system's published task scores, shown next to this model's")
    memorisation: bool = Field(True, description="measure extraction and loss ratio of the mixture's canaries")
