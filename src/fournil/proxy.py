"""Proxy scale: a recipe's data logic at laptop scale (`fournil run RECIPE --proxy`).

A proxy keeps everything that decides what the model reads: languages and shares, sources, their
categories and weights, the curriculum, parallel data, canaries, tokenizer shares, corpus settings,
the schedule's shape (warmup and decay at the same fractions of training, evaluation too but at most
`EVALUATIONS` times). It shrinks the
model (width, depth, heads, context; its architecture switches stay), the vocabulary and the token
budget, so the bake runs end to end on the shipped sample on a CPU, and runs no Hub benchmark
(`evaluate.harness_tasks`). It bakes into its own run folder
(`<name>-proxy`), and the recipe's `proxy:` record (what was shrunk) goes into the model card.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import Field

from fournil.schema import Section

# small: every recipe on the shipped sample, a 2-core CPU, under ten minutes; tiny: the CI test
SIZES: dict[str, dict[str, Any]] = {
    "small": {"dim": 128, "n_layers": 4, "n_heads": 4, "context_length": 256, "vocab_size": 4096, "max_steps": 150,
              "global_batch_tokens": 4096, "micro_batch_size": 16, "lr": 3e-3, "sample_chars": 2_000_000,
              "eval_chars": 200_000, "eval_docs": 10, "eval_examples": 10, "max_new_tokens": 16},
    "tiny": {"dim": 32, "n_layers": 1, "n_heads": 2, "context_length": 64, "vocab_size": 512, "max_steps": 4,
             "global_batch_tokens": 4096, "micro_batch_size": 16, "lr": 3e-3, "sample_chars": 60_000,
             "eval_chars": 5_000, "eval_docs": 2, "eval_examples": 1, "max_new_tokens": 2},
}
# Evaluations during a proxy's training, at most: one scores the same held-out documents however small the
# step, so where the full run's is a sliver of its interval, a proxy's costs steps; Croissant's every 1,000
# of 190,000 steps kept at the same fraction would evaluate at every one of the proxy's 150
EVALUATIONS = 10
CANARY_SHARE = 0.05  # canaries kept within this share of a proxy's budget: the largest repeat counts go first


class ProxyRecord(Section):
    """Set by `--proxy`, not by hand: which recipe this proxies and what was shrunk."""

    of: str = Field(description="the recipe's own name")
    size: str
    changes: list[str] = Field(default_factory=list, description="`field: full → proxy` for every value shrunk")


def _set(data: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        data = data.setdefault(part, {})
    data[last] = value


def proxy_data(data: dict, recipe, size: str) -> dict:
    """The recipe's plain data at proxy scale; `recipe` is the same data validated (its defaults filled)."""
    from fournil.model.presets import model_config

    s = SIZES[size]
    full = model_config(recipe.model, recipe.tokenizer.vocab_size)
    train, changes = recipe.train, []
    data = copy.deepcopy(data)

    def change(dotted: str, old: Any, new: Any) -> None:
        if old != new:
            _set(data, dotted, new)
            changes.append(f"{dotted}: {old:,} → {new:,}" if isinstance(old, int) and not isinstance(old, bool)
                           else f"{dotted}: {old} → {new}")

    heads = s["n_heads"]
    shape = {"dim": s["dim"], "n_layers": s["n_layers"], "n_heads": heads,
             "n_kv_heads": max(1, heads * full.n_kv_heads // full.n_heads),  # grouped-query attention stays grouped
             "ffn_dim": 8 * max(1, round(full.ffn_dim / full.dim * s["dim"] / 8)),  # the FFN keeps its ratio to the width
             "context_length": min(full.context_length, s["context_length"])}
    for key, value in shape.items():
        change(f"model.overrides.{key}", getattr(full, key), value)
    change("tokenizer.vocab_size", recipe.tokenizer.vocab_size, min(recipe.tokenizer.vocab_size, s["vocab_size"]))
    change("tokenizer.sample_chars", recipe.tokenizer.sample_chars, min(recipe.tokenizer.sample_chars, s["sample_chars"]))
    change("tokenizer.eval_chars", recipe.tokenizer.eval_chars, min(recipe.tokenizer.eval_chars, s["eval_chars"]))
    steps = s["max_steps"]

    def at_same_fraction(value: int, floor: int) -> int:
        return max(floor, round(value * steps / train.max_steps)) if value else 0

    change("train.max_steps", train.max_steps, steps)
    change("train.global_batch_tokens", train.global_batch_tokens, s["global_batch_tokens"])
    change("train.micro_batch_size", train.micro_batch_size, s["micro_batch_size"])
    change("train.lr", train.lr, max(train.lr, s["lr"]))  # a narrow model takes a larger step
    change("train.warmup_steps", train.warmup_steps, at_same_fraction(train.warmup_steps, 1))
    every = at_same_fraction(train.eval_every, 1)
    change("train.eval_every", train.eval_every, max(every, steps // EVALUATIONS) if every else 0)
    change("train.eval_docs_per_language", train.eval_docs_per_language, min(train.eval_docs_per_language, s["eval_docs"]))
    change("train.checkpoint_every", train.checkpoint_every, max(1, steps // 2))
    change("train.milestone_every", train.milestone_every, 0)
    change("train.activation_checkpointing", train.activation_checkpointing, "none")
    change("evaluate.max_docs_per_language", recipe.evaluate.max_docs_per_language,
           min(recipe.evaluate.max_docs_per_language, s["eval_docs"]))
    change("evaluate.max_examples", recipe.evaluate.max_examples, min(recipe.evaluate.max_examples or s["eval_examples"], s["eval_examples"]))
    change("evaluate.max_new_tokens", recipe.evaluate.max_new_tokens, min(recipe.evaluate.max_new_tokens, s["max_new_tokens"]))
    change("evaluate.harness_tasks", recipe.evaluate.harness_tasks, [])  # Hub benchmarks say nothing of a proxy model
    canaries = recipe.mixture.canaries
    repeats = sorted(canaries.repeats)
    per_repeat = canaries.count * sum(length + 2 for length in canaries.lengths)
    while len(repeats) > 1 and per_repeat * sum(repeats) > CANARY_SHARE * steps * s["global_batch_tokens"]:
        repeats.pop()
    change("mixture.canaries.repeats", canaries.repeats, repeats if repeats != sorted(canaries.repeats) else canaries.repeats)
    data["name"] = f"{recipe.name}-proxy" + ("" if size == "small" else f"-{size}")
    data["proxy"] = {"of": recipe.name, "size": size, "changes": changes}
    return data
