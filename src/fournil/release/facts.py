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

from pydantic import TypeAdapter, ValidationError

from fournil.corpus.figures import CorpusFigures, Step, StepCounts
from fournil.evaluate.figures import CheckpointScores, EvaluateFigures, Memorisation, ReferenceScores, TaskDetails
from fournil.mixture.figures import LanguageMixture, MixtureFigures
from fournil.release.records import Records, dig
from fournil.schema import Figures
from fournil.sft.figures import SftFigures
from fournil.tokenizer.figures import LanguageTokens, TokenizerFigures
from fournil.train.figures import Device, Energy, TrainFigures


def _num(value: Any) -> float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def older(kind: Any, raw: Any) -> Any:
    """A figure rebuilt from a stage's file, for a manifest of an older fournil that lacks it, as the figures model
    types it; None when the file does not hold it in that shape."""
    try:
        return TypeAdapter(kind).validate_python(raw)
    except ValidationError:
        return None


def plain(figures: Figures | None) -> dict:
    """Typed figures as the plain data the documents render: what the stage recorded, nothing added."""
    return figures.model_dump(exclude_unset=True) if figures is not None else {}


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

def _counts(entry: StepCounts) -> dict:
    """Documents read, kept and dropped by reason (and characters) of one language at one corpus step."""
    return {
        "read": entry.documents_read,
        "kept": entry.documents_kept,
        "characters_read": entry.characters_read,
        "characters_kept": entry.characters_kept,
        "dropped": {reason: c.documents for reason, c in (entry.dropped or {}).items()},
        "counts": entry.counts or {},
    }


def corpus_steps(records: Records) -> list[dict]:
    """The corpus funnel: per step, per language counts and examples of dropped text (stats.json)."""
    stats = records.json("corpus", "stats.json")
    examples = dig(stats, "examples") if isinstance(dig(stats, "examples"), dict) else {}
    steps = records.figures("corpus").steps
    out = []
    for i, step in enumerate(steps if steps is not None else older(list[Step], dig(stats, "steps")) or []):
        name = step.step or f"step {i}"
        found = examples.get(name)
        out.append({"step": name, "per_language": {lang: _counts(c) for lang, c in (step.per_language or {}).items()},
                    "examples": found if isinstance(found, dict) else {}})
    return out


def funnel(steps: list[dict], languages: list[str]) -> dict[str, list[tuple[str, float | None]]]:
    """Per language: the documents the first step read ("input"), then the documents kept after each step."""
    result = {}
    for lang in languages:
        points: list[tuple[str, float | None]] = []
        for i, step in enumerate(steps):
            counts = step["per_language"].get(lang)
            if i == 0:
                points.append(("input", counts["read"] if counts else None))
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

def memorisation_rows(by_repeats: dict[str, Memorisation] | None) -> list[dict] | None:
    """The evaluate stage's `memorisation[repeats]` as rows by repeat count (0 = the never-planted controls),
    or None when not recorded."""
    rows = [{"repeats": int(repeats), **m.model_dump(include=set(Memorisation.model_fields))}
            for repeats, m in (by_repeats or {}).items() if repeats.isdigit()]
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


def task_rows(details: dict[str, TaskDetails] | None, reference: ReferenceScores | None) -> list[dict]:
    """One row per task: its headline score, standard error, examples, shots and chance level, by language, with the
    reference system's published score when the recipe names one (a reference task the run did not score: value None),
    divided by 100 when published in percent of a fraction, so that it reads in the model's unit."""
    rows = []
    scores = (reference.scores if reference else None) or {}
    scale = 100 if reference and reference.percent is True else 1
    published = {name: v / scale for name, v in scores.items() if _num(v) is not None}
    for name, t in (details or {}).items():
        metrics = t.metrics or {}
        headline = t.headline or next((m for m, v in metrics.items() if isinstance(v, dict)), None)
        cell = metrics.get(headline) if isinstance(metrics.get(headline), dict) else {}
        rows.append({"task": name, "languages": "-".join(t.languages or []) or "all", "metric": headline,
                     "value": _num(cell.get("value")), "stderr": _num(cell.get("stderr")),
                     "examples": _num(_first(cell.get("examples"), t.examples)), "shots": t.num_fewshot,
                     "chance": _num(metrics.get("chance")), "reference": published.get(name),
                     "harness": t.harness, "dataset": t.dataset})
    for name, value in published.items():
        if name not in (details or {}):
            rows.append({"task": name, "languages": None, "metric": None, "value": None, "stderr": None, "examples": None,
                         "shots": None, "chance": None, "reference": value, "harness": None, "dataset": None})
    return sorted(rows, key=lambda r: (r["languages"] is None, r["languages"] or "", r["task"]))


def bpb_curves(checkpoints: list[CheckpointScores] | None) -> dict[str, list[tuple[float, float]]]:
    """lang → (tokens seen, bits per byte) at each pretraining checkpoint the evaluate stage scored (the tuned
    model, another objective, is left out): the held-out sample of the trainer's evaluations, so one curve."""
    curves: dict[str, list[tuple[float, float]]] = {}
    for c in checkpoints or []:
        for lang, value in (c.bits_per_byte or {}).items():
            if c.name != "sft" and c.tokens_seen is not None and _num(value) is not None:
                curves.setdefault(lang, []).append((c.tokens_seen, value))
    return curves


def task_curves(checkpoints: list[CheckpointScores] | None, rows: list[dict]) -> dict[str, list[tuple[float, float]]]:
    """task → (tokens seen, headline score) at each evaluated checkpoint that recorded both."""
    curves: dict[str, list[tuple[float, float]]] = {}
    for c in checkpoints or []:
        for r in rows:
            value = _num((c.tasks or {}).get(r["task"]))
            if c.tokens_seen is not None and value is not None:
                curves.setdefault(r["task"], []).append((c.tokens_seen, value))
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

    cf: CorpusFigures = records.figures("corpus")
    steps = corpus_steps(records)
    tk: TokenizerFigures = records.figures("tokenizer")
    mf: MixtureFigures = records.figures("mixture")
    ef: EvaluateFigures = records.figures("evaluate")

    groups = plan_groups(records.json("mixture", "plan.json"))
    headers = shard_headers(records) if not groups else []
    mixture = {}
    for lang in languages:
        fig = (mf.per_language or {}).get(lang) or LanguageMixture()
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
            "documents": fig.documents,
            "available_tokens": fig.tokens,
            "planned_tokens": fig.planned_tokens,
            "share": fig.share,
            "epochs": fig.epochs,
            "max_group_epochs": fig.max_group_epochs,
            "target_share": recipe.languages.get(lang),
            "by_category": dict(by_category),
        }

    tf: TrainFigures = records.figures("train")
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
        # the recipe's choices, as the train stage's fingerprint vouches for them
        "recipe": recipe.train.model_dump(include={"optimizer", "lr", "schedule", "warmup_steps", "min_lr_ratio", "decay_fraction",
                                                   "weight_decay", "global_batch_tokens"}),
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

    results = records.json("evaluate", "results.json") if None in (ef.task_details, ef.tasks, ef.memorisation) else None
    details = ef.task_details if ef.task_details is not None else older(dict[str, TaskDetails], results_task_details(results))
    rows = task_rows(details, ef.reference)
    tok_lang = tk.per_language if tk.per_language is not None else older(
        dict[str, LanguageTokens], dig(records.json("tokenizer", "tokenizer_report.json"), "results.0.per_language"))
    return {
        "name": name,
        "recipe": recipe.name,
        "description": recipe.description,
        "proxy": recipe.proxy.model_dump() if recipe.proxy else None,
        "languages": languages,
        "release": release.model_dump(),
        "corpus": {"per_language": {lang: plain((cf.per_language or {}).get(lang)) for lang in languages}, "steps": steps,
                   "funnel": funnel(steps, languages),
                   "harmful_lists": {lang: plain(h) for lang, h in (cf.harmful_lists or {}).items()}},
        "tokenizer": {
            "vocab_size": _first(tk.vocab_size, _num(config.get("vocab_size")) if config else None),
            "sha256": tk.sha256,
            "special_tokens": plain(tk.special_tokens),
            "per_language": {lang: plain((tok_lang or {}).get(lang)) for lang in languages},
        },
        "mixture": {"per_language": mixture, "groups": groups, "budget_tokens": mf.budget_tokens,
                    "stages": dig(records.json("mixture", "plan.json"), "stages") or []},
        "train": train,
        "sft": sft,
        "curves": train_series(records.jsonl("train", "log.jsonl")),
        "model": model,
        "evaluate": {"per_language": {lang: plain((ef.per_language or {}).get(lang)) for lang in languages},
                     "memorisation": memorisation_rows(ef.memorisation if ef.memorisation is not None else
                                                       older(dict[str, Memorisation], dig(results, "memorisation.by_repeats"))),
                     "tasks": (ef.tasks if ef.tasks is not None else results_tasks(results)) or {},
                     "task_rows": rows, "reference": plain(ef.reference) or None,
                     "harness_skipped": sorted((ef.harness.skipped if ef.harness else None) or {}),
                     "task_curves": task_curves(ef.checkpoints, rows), "bpb_curves": bpb_curves(ef.checkpoints)},
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
    sf: SftFigures = records.figures("sft")
    energy = sf.energy or Energy()
    return {
        "tuned": bool(sf.instruction_tuned),
        "init_from": sf.init_from if recipe.sft and recipe.sft.init_from else None,  # None: this run's base model
        "template": sf.chat_template,
        "own_tokenizer": sf.tokenizer if sf.tokenizer and sf.tokenizer == sf.init_from else None,  # None: the run's tokenizer
        "added_tokens": sf.added_tokens or [],
        "epochs": sf.epochs,
        "steps": sf.steps,
        "tokens": sf.tokens,
        "wall_seconds": sf.wall_seconds,
        "energy_kwh": energy.kwh,
        "co2_kg": energy.kg_co2eq,
        "sources": [plain(source) for source in sf.sources or []],
        "per_language": {lang: plain(f) for lang, f in (sf.per_language or {}).items()},
        "chat": {lang: plain(c) for lang, c in (records.figures("evaluate").chat or {}).items()},
        "chat_translation": {d: plain(t) for d, t in (records.figures("evaluate").chat_translation or {}).items()},
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
