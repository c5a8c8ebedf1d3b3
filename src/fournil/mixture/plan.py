"""The plan: how many training tokens each (language, source) group gives in each curriculum stage.

A stage takes `share` of the budget; each language takes its target share of the stage; within a
language a group's share is ∝ weight × tokens^alpha (alpha = 1: natural proportions scaled by the
weights; alpha = 0: the weights alone; in between: temperature sampling). A group's epochs are its
planned tokens over its tokens; a plan that repeats a group more than `max_epochs` is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fournil.errors import FournilError
from fournil.mixture.config import CurriculumStage, MixtureConfig


@dataclass
class Group:
    """A shard: a (language, source) pair with its category, token count and the source's own weight."""

    lang: str
    source: str
    category: str
    tokens: int
    documents: int
    weight: float = 1.0

    @property
    def key(self) -> str:
        return f"{self.lang}/{self.source}"


def _check_weights(weights: dict[str, dict[str, float]], groups: list[Group], where: str) -> None:
    for lang, table in weights.items():
        names = {g.source for g in groups if g.lang == lang} | {g.category for g in groups if g.lang == lang}
        if not names:
            raise FournilError(f"{where}: no {lang!r} data; weights name a language among those with data: "
                               f"{sorted({g.lang for g in groups})}")
        for name, value in table.items():
            if name not in names:
                raise FournilError(f"{where}.{lang}.{name}: neither a source nor a category of {lang} "
                                   f"(those are {sorted(names)})")
            if value < 0:
                raise FournilError(f"{where}.{lang}.{name} = {value}: weights must be ≥ 0")


def group_shares(groups: list[Group], languages: dict[str, float], weights: dict[str, dict[str, float]],
                 alpha: float, where: str) -> list[float]:
    """Each group's share of a stage's tokens (they sum to 1)."""
    _check_weights(weights, groups, where)
    shares = [0.0] * len(groups)
    for lang, share in languages.items():
        if share == 0:
            continue
        table = weights.get(lang, {})
        scores = {
            i: g.weight * table.get(g.source, table.get(g.category, 1.0)) * g.tokens**alpha
            for i, g in enumerate(groups) if g.lang == lang and g.tokens > 0
        }
        total = sum(scores.values())
        if total == 0:
            raise FournilError(f"{where}: language {lang} should give {share:.1%} of the tokens but has no data "
                               f"(no documents, or every weight is 0); add {lang} sources or set its share to 0")
        for i, score in scores.items():
            shares[i] = share * score / total
    return shares


def make_plan(groups: list[Group], languages: dict[str, float], config: MixtureConfig, budget: int, refuse: bool = True) -> dict:
    """The plan as JSON-ready data; raises when a group would be repeated beyond `max_epochs` (unless
    `refuse` is False: `fournil plan` reports the repeats instead)."""
    stages = config.stages or [CurriculumStage(name="main", share=1.0)]
    planned = [0.0] * len(groups)
    stage_plans = []
    start = 0
    for k, stage in enumerate(stages):
        where = f"mixture.stages.{k}" if config.stages else "recipe"
        langs = stage.languages if stage.languages is not None else languages
        unknown = sorted(set(langs) - set(languages))
        if unknown:
            raise FournilError(f"{where}.languages: {unknown} are not among the recipe's languages {sorted(languages)}")
        weights = stage.weights if stage.weights is not None else config.weights
        shares = group_shares(groups, langs, weights, config.alpha, f"{where}.weights" if stage.weights else "mixture.weights")
        end = budget if k == len(stages) - 1 else start + round(stage.share * budget)
        tokens = [share * (end - start) for share in shares]
        planned = [a + b for a, b in zip(planned, tokens)]
        stage_plans.append({
            "name": stage.name, "share": stage.share, "start_token": start, "end_token": end,
            "languages": {lang: langs.get(lang, 0.0) for lang in languages},
            "groups": {g.key: {"share": s, "tokens": round(t)} for g, s, t in zip(groups, shares, tokens) if s > 0},
        })
        start = end
    epochs = [p / g.tokens if g.tokens else 0.0 for g, p in zip(groups, planned)]
    if refuse:
        _refuse_over_cap(groups, epochs, config.max_epochs, budget)
    return {
        "budget_tokens": budget,
        "max_epochs": config.max_epochs,
        "alpha": config.alpha,
        "languages": list(languages),
        "groups": [
            {"key": g.key, "lang": g.lang, "source": g.source, "category": g.category, "tokens": g.tokens,
             "documents": g.documents, "planned_tokens": round(p), "epochs": round(e, 4), "shard": f"shards/{g.key}"}
            for g, p, e in zip(groups, planned, epochs)
        ],
        "stages": stage_plans,
    }


def _refuse_over_cap(groups: list[Group], epochs: list[float], cap: float, budget: int) -> None:
    over = sorted(((e, g) for g, e in zip(groups, epochs) if e > cap + 1e-9), key=lambda item: -item[0])
    if not over:
        return
    worst_epochs, worst = over[0]
    fits = int(budget * cap / worst_epochs)
    more = f" ({len(over) - 1} more group{'s' * (len(over) > 2)} over the cap)" if len(over) > 1 else ""
    raise FournilError(
        f"mixture plan refused: {worst.key} would be read {worst_epochs:.1f} times "
        f"({round(worst_epochs * worst.tokens):,} tokens from its {worst.tokens:,}), above mixture.max_epochs = {cap:g}"
        f"{more}; lower the budget (train.max_steps × train.global_batch_tokens = {budget:,} tokens; at most "
        f"{fits:,} fit), raise mixture.max_epochs to {math.ceil(worst_epochs * 10) / 10:g}, lower {worst.lang}'s share, "
        f"or add {worst.lang} data"
    )


def table(plan: dict) -> str:
    """The plan as a text table: one row per group, planned tokens per stage, epochs."""
    stages = plan["stages"]
    head = ["group", "category", "tokens", *(s["name"] for s in stages), "epochs"]
    rows = [head]
    for g in plan["groups"]:
        rows.append([g["key"], g["category"], f"{g['tokens']:,}",
                     *(f"{s['groups'].get(g['key'], {}).get('tokens', 0):,}" for s in stages), f"{g['epochs']:.2f}"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
