"""A sweep's points: each a recipe of its own, validated, named after its values, with the
fingerprint and lineage every stage will have, so that what two points share is known before anything
runs: a whole stage where fingerprints match, a stage's kept work where lineages match (the shards of
mixtures that differ only in their plan).

Varying one language's share (`languages.fr`) scales the shares of the languages not varied so that
they keep their ratios and all still sum to 1. Every point must be a valid recipe and a distinct
bake; otherwise the sweep stops before any point runs, naming each bad point.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fournil.errors import FournilError
from fournil.recipe import Recipe, load_recipe
from fournil.runs import STAGE_NAMES, get_stage, planned_fingerprints, planned_lineages
from fournil.sweep.config import SEED_FIELD, SweepConfig

SEPARATOR = "_"  # between the name parts of a point: fr-0.3_seed-1235


@dataclass
class Point:
    name: str
    values: dict[str, Any]  # varied field → this point's value (train.seed included when seeds > 1)
    overrides: list[str]  # the --set lines that make its recipe from the base
    recipe: Recipe | None = None
    fingerprints: dict[str, str] = field(default_factory=dict)
    lineages: dict[str, str] = field(default_factory=dict)

    @property
    def setting(self) -> dict[str, Any]:
        """The values without the seed: points of one setting differ only by seed."""
        return {k: v for k, v in self.values.items() if k != SEED_FIELD}


@dataclass
class Sweep:
    config: SweepConfig
    name: str
    folder: Path
    base: Recipe
    points: list[Point]

    @property
    def fields(self) -> list[str]:
        """The varied fields, the seed last."""
        return list(self.config.vary) + ([SEED_FIELD] if self.config.seeds > 1 else [])

    @property
    def last_stage(self) -> str:
        return self.config.until or STAGE_NAMES[-1]

    def owner(self, stage: str, point: Point) -> Point:
        """The first point whose stage has `point`'s fingerprint: the one that runs it for all of them."""
        return next(p for p in self.points if p.fingerprints[stage] == point.fingerprints[stage])

    def lender(self, stage: str, point: Point) -> Point:
        """The first point whose stage has `point`'s lineage, for a stage with kept work (else `point`):
        the one whose finished folder `point` starts from, keeping that work and redoing the rest."""
        if not get_stage(stage).kept:
            return point
        return next(p for p in self.points if p.lineages[stage] == point.lineages[stage])

    def kept_runs(self, stage: str) -> int:
        """How many times a stage's kept work is made in the sweep (once per lineage; 0 past `until`)."""
        return len({p.lineages[stage] for p in self.points}) if self.runs_per_stage()[stage] else 0

    def runs_per_stage(self) -> dict[str, int]:
        """How many times each stage runs in the sweep (instead of once per point); 0 past `until`."""
        last = STAGE_NAMES.index(self.last_stage)
        return {stage: len({p.fingerprints[stage] for p in self.points}) if k <= last else 0 for k, stage in enumerate(STAGE_NAMES)}

    def point(self, name: str) -> Point:
        for p in self.points:
            if p.name == name:
                return p
        raise FournilError(f"--point {name!r}: the sweep's points are {', '.join(p.name for p in self.points)}")


def _tails(fields: list[str]) -> dict[str, str]:
    """The shortest dotted ending of each field that no other field shares: languages.fr → fr."""
    tails = {}
    for f in fields:
        parts = f.split(".")
        for k in range(1, len(parts) + 1):
            tail = ".".join(parts[-k:])
            if not any(o != f and (o == tail or o.endswith("." + tail)) for o in fields):
                break
        tails[f] = tail.replace(".", "-")
    return tails


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return re.sub(r"[^A-Za-z0-9_.-]+", "", text.replace(", ", "-")) or "empty"


def _shares(values: dict[str, Any], base: Recipe) -> list[str]:
    """Overrides of the shares of languages not varied, scaled to keep their ratios and a sum of 1."""
    varied = {f.split(".", 1)[1]: v for f, v in values.items() if f.startswith("languages.") and f.count(".") == 1}
    rest = [code for code in base.languages if code not in varied]
    rest_total = sum(base.languages[code] for code in rest)
    if not varied or not rest or rest_total <= 0 or not all(isinstance(v, int | float) for v in varied.values()):
        return []
    left = 1 - sum(varied.values())
    return [f"languages.{code}={json.dumps(round(left * base.languages[code] / rest_total, 12))}" for code in rest]


def _combinations(config: SweepConfig) -> list[dict[str, Any]]:
    fields, columns = list(config.vary), list(config.vary.values())
    if config.zip and len({len(c) for c in columns}) > 1:
        sizes = ", ".join(f"{f} {len(c)}" for f, c in zip(fields, columns))
        raise FournilError(f"--zip: every varied field needs as many values ({sizes})")
    rows = list(zip(*columns)) if config.zip else list(itertools.product(*columns))
    return [dict(zip(fields, row)) for row in rows]


def _problems(error: FournilError) -> str:
    lines = [line.strip() for line in str(error).splitlines()]
    return "; ".join(lines[1:] if len(lines) > 1 and lines[0].endswith(":") else lines)


def expand(config: SweepConfig, base_path: Path, runs_dir: Path) -> Sweep:
    """Every point of the sweep, its recipe validated and its stages fingerprinted; bad points are
    one error naming each."""
    base = load_recipe(base_path, config.set, config.proxy)
    for f in config.vary:
        code = f.split(".", 1)[1] if f.startswith("languages.") else None
        if code is not None and code not in base.languages:
            raise FournilError(f"--vary {f}: the recipe has no language {code!r} (its languages: {', '.join(base.languages)})")
    seed0 = base.train.seed_or(base.seed)
    seeds = [seed0 + k for k in range(config.seeds)] if config.seeds > 1 else []
    fields = list(config.vary) + ([SEED_FIELD] if seeds else [])
    tails = _tails(fields)
    name = config.name or "-".join([base.name, *(tails[f] for f in fields)])
    points = []
    for values in _combinations(config):
        for seed in seeds or [None]:
            values_ = {**values, **({SEED_FIELD: seed} if seed is not None else {})}
            point_name = SEPARATOR.join(f"{tails[f]}-{_shown(v)}" for f, v in values_.items())
            overrides = [f"{f}={json.dumps(v)}" for f, v in values_.items()] + _shares(values_, base)
            points.append(Point(point_name, values_, overrides))
    names = [p.name for p in points]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise FournilError(f"sweep {name}: several points would be named {clash[0]!r}; give values that read apart")
    bad = []
    for p in points:
        try:
            p.recipe = load_recipe(base_path, [*config.set, *p.overrides, f"name={p.name}"], config.proxy)
        except FournilError as error:
            bad.append(f"{p.name}: {_problems(error)}")
            continue
        p.fingerprints, p.lineages = planned_fingerprints(p.recipe), planned_lineages(p.recipe)
    if bad:
        raise FournilError(f"sweep {name}: {len(bad)} of {len(points)} points {'are' if len(bad) > 1 else 'is'} not a valid recipe:\n  " + "\n  ".join(bad))
    same: dict[str, str] = {}
    for p in points:
        other = same.setdefault(p.fingerprints[config.until or STAGE_NAMES[-1]], p.name)
        if other != p.name:
            bad.append(f"{p.name} is the same bake as {other}: no stage reads what differs between them")
    if bad:
        raise FournilError(f"sweep {name}: a point must be a bake of its own:\n  " + "\n  ".join(bad))
    return Sweep(config.model_copy(update={"name": name}), name, Path(runs_dir) / name, base, points)
