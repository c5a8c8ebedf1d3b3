"""The evaluate stage's figures (its manifest's `figures`), read by the release by these names."""

from __future__ import annotations

from typing import Any

from fournil.schema import Figures


class LanguageScores(Figures):
    """The final model on one language's held-out sample."""

    bits_per_byte: float | None = None
    byte_perplexity: float | None = None
    unigram_bits_per_byte: float | None = None
    beats_unigram: bool | None = None
    documents: int | None = None
    bytes: int | None = None
    tokens: int | None = None
    tokens_per_second: float | None = None


class TaskDetails(Figures):
    languages: list[str] | None = None
    num_fewshot: int | None = None
    examples: int | None = None
    headline: str | None = None
    metrics: dict[str, Any] | None = None  # metric → {value, stderr, examples}, and plain figures such as chance
    harness: str | None = None  # "lm-eval" for evaluate.harness_tasks; absent for fournil's own runner
    dataset: dict[str, str | None] | None = None  # an lm-eval task's {path, name, split} on the Hugging Face Hub


class Memorisation(Figures):
    canaries: int | None = None
    extracted: int | None = None
    extraction_rate: float | None = None
    suffix_token_accuracy: float | None = None
    loss: float | None = None
    loss_ratio: float | None = None


class CheckpointScores(Figures):
    """One evaluated checkpoint's headline figures, for curves over tokens seen."""

    name: str | None = None
    step: int | None = None
    tokens_seen: int | None = None
    bits_per_byte: dict[str, float | None] | None = None
    tasks: dict[str, float | None] | None = None  # task → its headline metric's value


class ReferenceScores(Figures):
    name: str | None = None
    source: str | None = None
    scores: dict[str, float] | None = None
    percent: bool | None = None  # the scores are percentages of fractions: shown divided by 100


class HarnessRun(Figures):
    """What became of evaluate.harness_tasks."""

    version: str | None = None  # lm-eval's
    chat_template: bool | None = None  # prompts went through the model's chat template
    ran: list[str] | None = None
    skipped: dict[str, str] | None = None  # task → why (data not in the local datasets cache, lm-eval not installed)


class Fidelity(Figures):
    """Answers in the prompt's language (the Language Confusion Benchmark's line-level pass rate)."""

    pass_rate: float | None = None
    passed: int | None = None
    judged: int | None = None
    unjudged: int | None = None  # answers with no line long enough to identify
    answered_in: dict[str, int] | None = None  # judged lines by identified language


class ChatScores(Figures):
    conversations: int | None = None
    too_long: int | None = None  # prompts passed over: longer than the model's context
    chrf: dict[str, Any] | None = None  # {value, stderr, examples}
    rougeL: dict[str, Any] | None = None
    fidelity: Fidelity | None = None


class ChatTranslation(Figures):
    """A shipped translation task asked in chat form, in the source language, without examples."""

    task: str | None = None
    asked_in: str | None = None
    examples: int | None = None
    too_long: int | None = None  # test pairs passed over: the request does not fit the model's context
    chrf: dict[str, Any] | None = None  # {value, stderr, examples}
    fidelity: Fidelity | None = None  # answers in the target language


class EvaluateFigures(Figures):
    per_language: dict[str, LanguageScores] | None = None
    beats_unigram: bool | None = None  # in every language
    tasks: dict[str, dict[str, dict[str, float | None]]] | None = None  # task → languages ("en-fr") → metric → value
    task_details: dict[str, TaskDetails] | None = None
    memorisation: dict[str, Memorisation] | None = None  # canary repetitions ("0": never-planted controls) → figures
    checkpoints: list[CheckpointScores] | None = None
    reference: ReferenceScores | None = None  # the recipe's evaluate.reference, as given
    chat: dict[str, ChatScores] | None = None  # the tuned model on held-out conversations, by the user's language
    chat_translation: dict[str, ChatTranslation] | None = None  # direction ("en-fr") → the translation task asked in chat form
    harness: HarnessRun | None = None
