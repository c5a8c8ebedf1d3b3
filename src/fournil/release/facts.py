"""The figures of the release, gathered once from the run's records.

The card, datasheet, checklist and report all render from this one dict, so a figure appears the
same everywhere and can be traced to the record it came from. A figure that is not recorded is None.
"""

from __future__ import annotations

import json
import struct
from collections import defaultdict
from pathlib import Path
from typing import Any

from fournil.release.records import Records, dig
from fournil.schema import Figures
from fournil.train.figures import Device, Energy, TrainFigures


def _num(value: Any) -> float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def typed(model: type[Figures], raw: Any, records: Records, stage: str) -> Any:
    """A stage's figures as its typed model (what the stage declares and writes); figures of the wrong
    shape are noted as unreadable and read as not recorded."""
    from pydantic import ValidationError

    try:
        return model.model_validate(raw if isinstance(raw, dict) else {})
    except ValidationError:
        records.missing.append(f"{stage}/manifest.json figures (unreadable)")
        return model()


def safetensors_parameters(path: Path) -> int | None:
    """Number of parameters stored in a safetensors file, from its header alone."""
    try:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
    except (OSError, struct.error, json.JSONDecodeError, UnicodeDecodeError):
        return None
    total = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        count = 1
        for dim in entry.get("shape", []):
            count *= dim
        total += count
    return total


# --- corpus -------------------------------------------------------------------------------------

def _step_list(steps: Any) -> list[tuple[str, dict]]:
    """Corpus steps as (name, record), whether recorded as a list of records or a name → record map."""
    if isinstance(steps, dict):
        return [(str(k), v) for k, v in steps.items() if isinstance(v, dict)]
    if isinstance(steps, list):
        return [(str(_first(s.get("step"), s.get("name"), f"step {i}")), s) for i, s in enumerate(steps) if isinstance(s, dict)]
    return []


def _counts(entry: Any) -> dict | None:
    """Documents read, kept and dropped by reason (and characters) of one language at one corpus step."""
    if not isinstance(entry, dict):
        return None
    dropped = entry.get("dropped") if isinstance(entry.get("dropped"), dict) else {}
    return {
        "read": _num(entry.get("documents_read")),
        "kept": _num(entry.get("documents_kept")),
        "characters_read": _num(entry.get("characters_read")),
        "characters_kept": _num(entry.get("characters_kept")),
        "dropped": {str(reason): _num(v.get("documents") if isinstance(v, dict) else v) for reason, v in dropped.items()},
        "counts": entry.get("counts") if isinstance(entry.get("counts"), dict) else {},
    }


def corpus_steps(records: Records) -> list[dict]:
    """The corpus funnel: per step, per language counts and examples of dropped text."""
    stats = records.json("corpus", "stats.json")
    steps = _first(records.figure("corpus", "steps"), dig(stats, "steps"))
    all_examples = dig(stats, "examples") if isinstance(dig(stats, "examples"), dict) else {}
    out = []
    for name, record in _step_list(steps):
        per_language = record.get("per_language") if isinstance(record.get("per_language"), dict) else {}
        langs = {lang: c for lang, c in ((lang, _counts(v)) for lang, v in per_language.items()) if c}
        examples = all_examples.get(name) if isinstance(all_examples.get(name), dict) else {}
        out.append({"step": name, "per_language": langs, "examples": examples})
    return out


def funnel(steps: list[dict], languages: list[str]) -> dict[str, list[tuple[str, float | None]]]:
    """Per language: documents read by the first step, then documents kept after each step."""
    result = {}
    for lang in languages:
        points: list[tuple[str, float | None]] = []
        for i, step in enumerate(steps):
            counts = step["per_language"].get(lang)
            if i == 0:
                points.append(("read", counts["read"] if counts else None))
            points.append((step["step"], counts["kept"] if counts else None))
        result[lang] = points
    return result


# --- mixture ------------------------------------------------------------------------------------

def shard_headers(records: Records) -> list[dict]:
    headers = []
    for path in records.files("mixture", "shards/*/*.json"):
        try:
            header = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            records.skipped["mixture/shards: unreadable header"] += 1
            continue
        if isinstance(header, dict):
            header.setdefault("lang", path.parent.name)
            header.setdefault("source", path.stem)
            headers.append(header)
    return headers


def plan_groups(plan: Any) -> list[dict]:
    """The (language, source) groups of plan.json: category, tokens available, planned tokens, epochs."""
    groups = dig(plan, "groups")
    return [g for g in groups if isinstance(g, dict) and "lang" in g] if isinstance(groups, list) else []


# --- evaluation ---------------------------------------------------------------------------------

MEMORISATION_FIGURES = ("canaries", "extracted", "extraction_rate", "suffix_token_accuracy", "loss", "loss_ratio")


def memorisation_rows(by_repeats: Any) -> list[dict] | None:
    """The evaluate stage's `memorisation[repeats] = {canaries, extracted, ...}` as rows by repeat count
    (0 = the never-planted controls), or None when not recorded."""
    if not isinstance(by_repeats, dict):
        return None
    rows = []
    for repeats, cell in by_repeats.items():
        if isinstance(cell, dict) and str(repeats).isdigit():
            rows.append({"repeats": int(repeats), **{k: _num(cell.get(k)) for k in MEMORISATION_FIGURES}})
    return sorted(rows, key=lambda r: r["repeats"]) or None


def results_tasks(results: Any) -> dict:
    """tasks[task][langs][metric] = value from results.json's last checkpoint (the manifest's figure, rebuilt)."""
    tasks = None
    checkpoints = dig(results, "checkpoints")
    if isinstance(checkpoints, list) and checkpoints and isinstance(checkpoints[-1], dict):
        tasks = checkpoints[-1].get("tasks")
    found: dict = {}
    for name, task in (tasks.items() if isinstance(tasks, dict) else ()):
        metrics = task.get("metrics") if isinstance(task, dict) else None
        if isinstance(metrics, dict):
            langs = "-".join(task.get("languages") or []) or "all"
            found[name] = {langs: {m: v.get("value") for m, v in metrics.items() if isinstance(v, dict)}}
    return found


def results_task_details(results: Any) -> dict:
    """task_details[task] = {languages, num_fewshot, examples, headline, metrics} from results.json's last checkpoint."""
    checkpoints = dig(results, "checkpoints")
    tasks = checkpoints[-1].get("tasks") if isinstance(checkpoints, list) and checkpoints and isinstance(checkpoints[-1], dict) else None
    return {name: {k: t.get(k) for k in ("languages", "num_fewshot", "examples", "headline", "metrics")}
            for name, t in (tasks.items() if isinstance(tasks, dict) else ()) if isinstance(t, dict)}


def task_rows(details: Any, reference: Any) -> list[dict]:
    """One row per task: its headline score, standard error, examples, shots and chance level, by language, with the
    reference system's published score when the recipe names one (a reference task the run did not score: value None),
    divided by 100 when published in percent of a fraction, so that it reads in the model's unit."""
    rows = []
    scores = dig(reference, "scores") if isinstance(dig(reference, "scores"), dict) else {}
    scale = 100 if dig(reference, "percent") is True else 1
    published = {name: v / scale for name, v in scores.items() if _num(v) is not None}
    for name, t in (details.items() if isinstance(details, dict) else ()):
        metrics = t.get("metrics") if isinstance(t, dict) and isinstance(t.get("metrics"), dict) else {}
        headline = t.get("headline") or next((m for m, v in metrics.items() if isinstance(v, dict)), None)
        cell = metrics.get(headline) if isinstance(metrics.get(headline), dict) else {}
        rows.append({"task": name, "languages": "-".join(t.get("languages") or []) or "all", "metric": headline,
                     "value": _num(cell.get("value")), "stderr": _num(cell.get("stderr")),
                     "examples": _num(_first(cell.get("examples"), t.get("examples"))), "shots": _num(t.get("num_fewshot")),
                     "chance": _num(metrics.get("chance")), "reference": published.get(name),
                     "harness": t.get("harness"), "dataset": t.get("dataset") if isinstance(t.get("dataset"), dict) else None})
    for name, value in published.items():
        if name not in (details or {}):
            rows.append({"task": name, "languages": None, "metric": None, "value": None, "stderr": None, "examples": None,
                         "shots": None, "chance": None, "reference": value, "harness": None, "dataset": None})
    return sorted(rows, key=lambda r: (r["languages"] is None, r["languages"] or "", r["task"]))


def task_curves(checkpoints: Any, rows: list[dict]) -> dict[str, list[tuple[float, float]]]:
    """task → (tokens seen, headline score) at each evaluated checkpoint that recorded both."""
    curves: dict[str, list[tuple[float, float]]] = {}
    for c in checkpoints if isinstance(checkpoints, list) else ():
        tokens, tasks = _num(dig(c, "tokens_seen")), dig(c, "tasks")
        for r in rows:
            value = tasks.get(r["task"]) if isinstance(tasks, dict) else None
            if isinstance(value, dict):  # a results.json entry rather than the manifest's headline value
                value = dig(value, f"metrics.{value.get('headline')}.value")
            value = _num(value)
            if tokens is not None and value is not None:
                curves.setdefault(r["task"], []).append((tokens, value))
    return curves


# --- training log -------------------------------------------------------------------------------

def train_series(rows: list[dict]) -> dict:
    """Curves from train/log.jsonl: step lines (loss, lr, throughput, cumulative energy and emissions) and eval lines (bpb)."""
    series: dict[str, Any] = {"step": [], "tokens": [], "loss": [], "lr": [], "tokens_per_s": [], "energy_kwh": [], "co2_kg": [],
                              "loss_per_language": defaultdict(list), "eval": []}
    for row in rows:
        bpb = _first(dig(row, "eval.bits_per_byte"), row.get("bits_per_byte"))
        if isinstance(bpb, dict):
            series["eval"].append({"tokens": _num(_first(row.get("tokens"), row.get("tokens_seen"))), "bits_per_byte": bpb})
            continue
        step = _num(row.get("step"))
        if step is None or _num(row.get("loss")) is None:
            continue
        series["step"].append(step)
        series["tokens"].append(_num(_first(row.get("tokens"), row.get("tokens_seen"))))
        series["loss"].append(row["loss"])
        series["lr"].append(_num(row.get("lr")))
        series["tokens_per_s"].append(_num(_first(row.get("tokens_per_s"), row.get("tokens_per_second"))))
        series["energy_kwh"].append(_num(row.get("energy_kwh")))  # cumulative; on the steps where the trainer read its records
        series["co2_kg"].append(_num(row.get("kg_co2eq")))
        per_language = _first(row.get("loss_per_language"), row.get("loss_per_lang"))
        if isinstance(per_language, dict):
            for lang, value in per_language.items():
                if _num(value) is not None:
                    series["loss_per_language"][lang].append((step, value))
    series["loss_per_language"] = dict(series["loss_per_language"])
    return series


def energy_curve(series: dict) -> list[tuple[float, float]]:
    """(tokens seen, cumulative kWh) where the log recorded energy."""
    return [(t, kwh) for t, kwh in zip(series["tokens"], series["energy_kwh"]) if t is not None and kwh is not None]


# --- all ----------------------------------------------------------------------------------------

def gather(records: Records, recipe, release_dir: Path | None) -> dict:
    """Every figure the release shows, from the records; None where a figure is not recorded."""
    languages = list(recipe.languages)
    release = recipe.release
    name = release.model_name or recipe.name

    corpus_lang = records.figure("corpus", "per_language") or {}
    steps = corpus_steps(records)

    tok_lang = _first(records.figure("tokenizer", "per_language"),
                      dig(records.json("tokenizer", "tokenizer_report.json"), "results.0.per_language")) or {}

    groups = plan_groups(records.json("mixture", "plan.json"))
    headers = shard_headers(records) if not groups else []
    mix_lang = records.figure("mixture", "per_language") or {}
    mixture = {}
    for lang in languages:
        fig = mix_lang.get(lang) or {}
        by_category: dict[str, dict] = defaultdict(lambda: {"tokens": 0, "planned_tokens": None})
        for g in groups:
            if g["lang"] == lang and _num(g.get("tokens")) is not None:
                cell = by_category[str(g.get("category", "unknown"))]
                cell["tokens"] += g["tokens"]
                if _num(g.get("planned_tokens")) is not None:
                    cell["planned_tokens"] = (cell["planned_tokens"] or 0) + g["planned_tokens"]
        for h in headers:  # without a plan, the shard headers still say what each category holds
            if h["lang"] == lang and _num(h.get("tokens")) is not None:
                by_category[str(h.get("category", "unknown"))]["tokens"] += h["tokens"]
        mixture[lang] = {
            "documents": _num(fig.get("documents")),
            "available_tokens": _num(fig.get("tokens")),
            "planned_tokens": _num(fig.get("planned_tokens")),
            "share": _num(fig.get("share")),
            "epochs": _num(fig.get("epochs")),
            "max_group_epochs": _num(fig.get("max_group_epochs")),
            "target_share": recipe.languages.get(lang),
            "by_category": dict(by_category),
        }

    tf = typed(TrainFigures, records.figure("train", ""), records, "train")
    energy = tf.energy or Energy()
    train = {
        "steps": tf.steps,
        "tokens": tf.tokens,
        # a train stage that records its own wall time (null when it could not know it) is not second-guessed
        "wall_seconds": tf.wall_seconds if "wall_seconds" in tf.model_fields_set else _num(dig(records.manifest("train"), "wall_seconds")),
        "hardware": _hardware(tf.device),
        "energy_kwh": energy.kwh,
        "co2_kg": energy.kg_co2eq,
        "energy_method": energy.method,
        "codecarbon": energy.codecarbon.model_dump() if energy.codecarbon else None,
        "per_language": {lang: f.model_dump() for lang, f in (tf.per_language or {}).items()},
    }
    sft = sft_facts(records, recipe)
    train["instruction_tuned"] = sft["tuned"]

    config = _json_file(release_dir / "config.json") if release_dir else None
    model = {
        "config": config or {},
        "parameters": _first(safetensors_parameters(release_dir / "model.safetensors") if release_dir else None, tf.params),
        "exported": bool(config) and "architectures" in config,
        "architecture": (config.get("architectures") or ["fournil"])[0] if config else None,
    }

    eval_lang = records.figure("evaluate", "per_language") or {}
    results = records.json("evaluate", "results.json")
    reference = records.figure("evaluate", "reference")
    rows = task_rows(_first(records.figure("evaluate", "task_details"), results_task_details(results)), reference)
    return {
        "name": name,
        "recipe": recipe.name,
        "description": recipe.description,
        "proxy": recipe.proxy.model_dump() if recipe.proxy else None,
        "languages": languages,
        "release": release.model_dump(),
        "corpus": {"per_language": {lang: corpus_lang.get(lang) or {} for lang in languages}, "steps": steps,
                   "funnel": funnel(steps, languages)},
        "tokenizer": {
            "vocab_size": _num(_first(records.figure("tokenizer", "vocab_size"), config.get("vocab_size") if config else None)),
            "sha256": records.figure("tokenizer", "sha256"),
            "special_tokens": records.figure("tokenizer", "special_tokens") or {},
            "per_language": {lang: tok_lang.get(lang) or {} for lang in languages},
        },
        "mixture": {"per_language": mixture, "groups": groups, "budget_tokens": _num(records.figure("mixture", "budget_tokens")),
                    "stages": dig(records.json("mixture", "plan.json"), "stages") or []},
        "train": train,
        "sft": sft,
        "curves": train_series(records.jsonl("train", "log.jsonl")),
        "model": model,
        "evaluate": {"per_language": {lang: eval_lang.get(lang) or {} for lang in languages},
                     "memorisation": memorisation_rows(_first(records.figure("evaluate", "memorisation"),
                                                              dig(results, "memorisation.by_repeats"))),
                     "tasks": _first(records.figure("evaluate", "tasks"), results_tasks(results)) or {},
                     "task_rows": rows, "reference": reference if isinstance(reference, dict) else None,
                     "harness_skipped": sorted(_first(dig(records.figure("evaluate", "harness"), "skipped"),
                                                      dig(results, "harness.skipped")) or {}),
                     "task_curves": task_curves(_first(records.figure("evaluate", "checkpoints"), dig(results, "checkpoints")), rows),
                     "results": results},
        "canaries": records.json("mixture", "canaries.json"),
        "pii": recipe.corpus.pii,
        "gguf": None,
        "manifests": {stage: {"fingerprint": dig(records.manifest(stage), "fingerprint"),
                              "finished_at": dig(records.manifest(stage), "finished_at"),
                              "versions": dig(records.manifest(stage), "versions")}
                      for stage in records.dirs},
    }


def sft_facts(records: Records, recipe) -> dict:
    """What instruction tuning did: data per source with licences, steps, energy, and the chat scores."""
    fig = records.figure("sft", "") or {}
    energy = fig.get("energy") if isinstance(fig.get("energy"), dict) else {}
    chat = records.figure("evaluate", "chat") or {}
    return {
        "tuned": bool(fig.get("instruction_tuned")),
        "init_from": fig.get("init_from") if recipe.sft and recipe.sft.init_from else None,  # None: this run's base model
        "template": fig.get("chat_template"),
        "epochs": _num(fig.get("epochs")),
        "steps": _num(fig.get("steps")),
        "tokens": _num(fig.get("tokens")),
        "wall_seconds": _num(fig.get("wall_seconds")),
        "energy_kwh": _num(energy.get("kwh")),
        "co2_kg": _num(energy.get("kg_co2eq")),
        "sources": [s for s in fig.get("sources") or [] if isinstance(s, dict)],
        "per_language": fig.get("per_language") or {},
        "chat": chat if isinstance(chat, dict) else {},
    }


def _hardware(device: Device | None) -> str | None:
    """Hardware as one line, e.g. "1 × NVIDIA H100", from the train figures' device."""
    if device is None or not device.name:
        return None
    return f"{device.processes} × {device.name}" if device.processes else device.name


def _json_file(path: Path) -> dict | None:
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return found if isinstance(found, dict) else None
