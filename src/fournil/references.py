"""The reference systems fournil's recipes follow, with the figures their papers and cards publish.

`fournil plan` sets a recipe next to its reference (`plan.reference`), and a test checks that each
recipe in recipes/ keeps its reference's size, tokens and shares. Shares are of training tokens, for
the languages the source gives; a recipe over fewer languages keeps their ratios. `evaluate.reference`
names one to show its published task scores beside the model's (`task_scores`, by lm-eval task name).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Reference:
    title: str
    source: str  # where the figures come from
    parameters: float
    tokens: float  # training tokens
    vocab_size: int
    context_length: int
    shares: dict[str, float] = field(default_factory=dict)
    non_english_curriculum: tuple[float, ...] = ()  # non-English share of each curriculum stage
    task_scores: dict[str, float] = field(default_factory=dict)  # lm-eval task name → published score, in percent
    task_source: str | None = None  # where the task scores come from


# TeenyTinyLlama's benchmark table (Evaluation/EVAL.md of github.com/Nkluge-correa/TeenyTinyLlama, as in
# both model cards): Okapi's Portuguese translations (Lai et al. 2023, arXiv:2307.16039) run in
# laiviet/lm-evaluation-harness as `--tasks arc_pt,hellaswag_pt,mmlu_pt,truthfulqa_pt`
# (Evaluation/lm-evaluation-harness-pt.ipynb there). lm-eval ships them as okapi's arc_pt, hellaswag_pt,
# m_mmlu_pt and truthfulqa_pt_mc1/mc2; mc2 is assumed, the Open LLM Leaderboard's TruthfulQA metric,
# whose figures that table mixes in. Neither source states the metric (acc or acc_norm) or the shots.
TTL_TASKS = "Corrêa et al. 2024, arXiv:2401.16640: Evaluation/EVAL.md of github.com/Nkluge-correa/TeenyTinyLlama (percent)"


REFERENCES: dict[str, Reference] = {
    "croissant": Reference("CroissantLLM 1.3B", "Faysse et al. 2024, arXiv:2402.00786; 1.35B in its released checkpoint", 1.35e9, 3.0e12, 32000, 2048,
                           {"fr": 0.5, "en": 0.5}),
    "polylm-1.7b": Reference("PolyLM 1.7B", "Wei et al. 2023, arXiv:2307.06018", 1.7e9, 640e9, 256000, 2048,
                             non_english_curriculum=(0.3, 0.6)),
    "lucie-7b": Reference("Lucie-7B", "Gouvert et al. 2025, arXiv:2503.12294", 6.7e9, 3.1e12, 65024, 4096),
    "ttl-160m": Reference("TeenyTinyLlama 160m", "Corrêa et al. 2024, arXiv:2401.16640; trained on the 6.2B-token Pt-Corpus Instruct", 162e6, 6.2e9, 32000, 2048, {"pt": 1.0},
                          task_scores={"arc_pt": 26.15, "hellaswag_pt": 29.29, "m_mmlu_pt": 28.11, "truthfulqa_pt_mc2": 41.12}, task_source=TTL_TASKS),
    "ttl-460m": Reference("TeenyTinyLlama 460m", "Corrêa et al. 2024, arXiv:2401.16640, and its model card (468,239,360 parameters, 6.2B tokens)", 468e6, 6.2e9, 32000, 2048, {"pt": 1.0},
                          task_scores={"arc_pt": 29.40, "hellaswag_pt": 33.00, "m_mmlu_pt": 28.55, "truthfulqa_pt_mc2": 41.10}, task_source=TTL_TASKS),
    "bloom-1b7": Reference("BLOOM-1b7", "BigScience 2022, arXiv:2211.05100, and the bloom-1b7 model card", 1.722e9, 350e9,
                           250880, 2048, {"en": 0.3004, "fr": 0.129, "es": 0.108, "pt": 0.049}),
}
