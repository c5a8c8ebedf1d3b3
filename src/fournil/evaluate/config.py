"""The `evaluate:` section of a recipe."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

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
    percent: bool = Field(False, description="the scores are percentages of what fournil and lm-eval give as fractions (accuracy): "
                                             "they are shown divided by 100, beside this model's")


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
    harness_tasks: list[str] = Field(
        default_factory=list,
        description="lm-eval task names (xnli_fr, belebele_fra_Latn, arc_pt, ...) run through lm-evaluation-harness on the final model "
                    "when their data is in the local Hugging Face datasets cache; each other one is skipped with a one-line reason")
    apply_chat_template: bool | None = Field(
        None, description="lm-eval's --apply_chat_template for harness_tasks; default on for the sft stage's chat model, off for a base model")
    reference: Reference | None = Field(
        None, description="a reference system's published task scores, shown next to this model's: {name, source, scores, percent}, "
                          "or the name of one in fournil.references whose task scores are published (ttl-160m, ttl-460m)")

    @field_validator("reference", mode="before")
    @classmethod
    def _named_reference(cls, reference):  # noqa: ANN001, ANN206
        """A name from fournil.references becomes that system's published task scores (in percent, as printed)."""
        if not isinstance(reference, str):
            return reference
        from fournil.references import REFERENCES

        known = {key: ref for key, ref in REFERENCES.items() if ref.task_scores}
        if reference not in known:
            raise ValueError(f"no published task scores for {reference!r}; name one of {', '.join(known)} or give {{name, source, scores}}")
        ref = known[reference]
        return {"name": ref.title, "source": ref.task_source, "scores": dict(ref.task_scores), "percent": True}
    memorisation: bool = Field(True, description="measure extraction and loss ratio of the mixture's canaries")
