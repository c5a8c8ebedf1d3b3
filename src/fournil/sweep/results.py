"""A sweep's results, read from its points' manifests: per point the held-out bits per byte per
language and task scores (evaluate), tokens and energy (train, sft), wall time (every stage), and who
ran each stage; per setting (the points that differ only by seed) their mean and spread; the
settings on the Pareto front of the languages' bits per byte.
"""

from __future__ import annotations

import json
import statistics
from typing import Any

from fournil.runs import MANIFEST, STAGE_NAMES, get_stage, read_figures
from fournil.sweep.config import SEED_FIELD
from fournil.sweep.points import Point, Sweep


def _manifest(sweep: Sweep, point: Point, stage: str) -> dict | None:
    """The point's manifest of `stage` when it is finished with the fingerprint the sweep plans."""
    try:
        manifest = json.loads((sweep.folder / point.name / stage / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("fingerprint") == point.fingerprints[stage] else None


def _energy(*figures) -> float | None:
    values = [f.energy.kwh for f in figures if f is not None and f.energy is not None and f.energy.kwh is not None]
    return sum(values) if values else None


def point_results(sweep: Sweep, point: Point, error: str | None) -> dict[str, Any]:
    manifests = {stage: _manifest(sweep, point, stage) for stage in STAGE_NAMES}
    evaluate, train, sft = (read_figures(get_stage(s), manifests[s]) for s in ("evaluate", "train", "sft"))
    finished = manifests[sweep.last_stage] is not None
    per_language = {lang: {"bits_per_byte": s.bits_per_byte, "unigram_bits_per_byte": s.unigram_bits_per_byte}
                    for lang, s in ((evaluate.per_language or {}).items() if evaluate else [])}
    tasks = {}
    for name, details in ((evaluate.task_details or {}).items() if evaluate else []):
        headline = (details.metrics or {}).get(details.headline) if details.headline else None
        if isinstance(headline, dict) and isinstance(headline.get("value"), int | float):
            tasks[name] = {"metric": details.headline, "value": headline["value"], "stderr": headline.get("stderr")}
    walls = [m.get("wall_seconds") for m in manifests.values() if m and isinstance(m.get("wall_seconds"), int | float)]
    return {
        "name": point.name,
        "values": point.values,
        "status": "finished" if finished else ("failed" if error else "not finished"),
        "error": None if finished else error,
        "per_language": per_language,
        "tasks": tasks,
        "tokens": train.tokens if train else None,
        "wall_seconds": round(sum(walls), 3) if walls else None,
        "energy_kwh": _energy(train, sft),
        "stages": {stage: (m or {}).get("recipe") for stage, m in manifests.items() if m},  # the point that ran it
    }


def _spread(values: list[float]) -> dict[str, float | int] | None:
    if not values:
        return None
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0, "n": len(values)}


def _dominates(a: dict[str, float], b: dict[str, float]) -> bool:
    return all(a[k] <= b[k] for k in a) and any(a[k] < b[k] for k in a)


def settings(points: list[dict], languages: list[str]) -> list[dict]:
    """Points of one setting (all values but the seed) together: mean and standard deviation over seeds."""
    groups: dict[str, list[dict]] = {}
    for p in points:
        key = json.dumps({k: v for k, v in p["values"].items() if k != SEED_FIELD}, sort_keys=True)
        groups.setdefault(key, []).append(p)
    out = []
    for key, members in groups.items():
        done = [p for p in members if p["status"] == "finished"]
        tasks = sorted({t for p in done for t in p["tasks"]})
        out.append({
            "values": json.loads(key),
            "points": [p["name"] for p in members],
            "bits_per_byte": {lang: _spread([p["per_language"][lang]["bits_per_byte"] for p in done
                                             if isinstance((p["per_language"].get(lang) or {}).get("bits_per_byte"), int | float)])
                              for lang in languages},
            "tasks": {t: _spread([p["tasks"][t]["value"] for p in done if t in p["tasks"]]) for t in tasks},
            **{k: _spread([p[k] for p in done if isinstance(p[k], int | float)]) for k in ("tokens", "wall_seconds", "energy_kwh")},
        })
    scored = [s for s in out if all(s["bits_per_byte"][lang] for lang in languages)]
    means = [{lang: s["bits_per_byte"][lang]["mean"] for lang in languages} for s in scored]
    for s, mine in zip(scored, means):
        s["pareto"] = not any(_dominates(other, mine) for other in means if other is not mine)
    for s in out:
        s.setdefault("pareto", False)
    return out


def collect(sweep: Sweep, errors: dict[str, str]) -> dict[str, Any]:
    points = [point_results(sweep, p, errors.get(p.name)) for p in sweep.points]
    languages = list(sweep.base.languages)
    ran = {stage: len({p["stages"][stage] for p in points if stage in p["stages"]}) for stage in STAGE_NAMES}
    unique_walls: dict[tuple, float] = {}
    for p in sweep.points:
        for stage in STAGE_NAMES:
            m = _manifest(sweep, p, stage)
            if m and isinstance(m.get("wall_seconds"), int | float):
                unique_walls[(stage, m["fingerprint"])] = m["wall_seconds"]
    by_hand = [p["wall_seconds"] for p in points if p["wall_seconds"] is not None]
    made = {m["fingerprint"]: m for m in (_manifest(sweep, p, "mixture") for p in sweep.points) if m}  # a shared one once
    mixtures = [read_figures(get_stage("mixture"), m) for m in made.values()]
    encoded = {"planned": sweep.kept_runs("mixture"), "made": sum(bool(m.shards_encoded) for m in mixtures)}
    return {
        "sweep": sweep.name,
        "recipe": sweep.config.recipe,
        "proxy": sweep.config.proxy,
        "fields": sweep.fields,
        "zip": sweep.config.zip,
        "seeds": sweep.config.seeds,
        "until": sweep.last_stage,
        "languages": languages,
        "stage_runs": {"planned": sweep.runs_per_stage(), "made": ran, "points": len(points), "shards_encoded": encoded},
        "wall_seconds": {"stages_run": round(sum(unique_walls.values()), 3), "points_by_hand": round(sum(by_hand), 3)},
        "points": points,
        "settings": settings(points, languages),
    }
