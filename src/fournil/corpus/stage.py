"""The corpus stage: raw sources → curated, deduplicated, held-out-split documents, fully accounted.

`run(ctx)` plans the work (files spread over tasks, settings per language), runs the two passes of
`fournil.corpus.pipeline` with a datatrove executor, merges the tasks' ledgers into `stats.json`
and returns the figures. An interrupted run resumes: finished tasks are not redone.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

from fournil.corpus.harmful import LDNOOBW, WordList, ldnoobw, list_digest, read_word_list
from fournil.corpus.langid import make_identifier
from fournil.corpus.ledger import Ledger
from fournil.corpus.pipeline import CurateFiles, DedupLanguage
from fournil.corpus.quality import load_settings
from fournil.corpus.readers import check_readers
from fournil.errors import FournilError
from fournil.executors import keep_logs, make_executor, run_executor
from fournil.runs import StageContext

DESCRIPTIONS = {"pass1": "pass 1 (read → decontaminate), tasks", "pass2": "pass 2 (dedup, split, write), languages"}
AUTO_TASKS, TASK_BYTES = 64, 256 * 2**20  # default pass-1 split: enough tasks for 64 workers, a task per 256 MiB beyond
STEP_ORDER = ("read", "normalise", "language_id", "quality", "harmful", "pii", "decontaminate", "dedup_exact", "dedup_minhash")


def assign_files(items: list[dict], tasks: int) -> list[list[dict]]:
    """Spread files over tasks, largest first onto the lightest task, so tasks take similar time; each
    task reads its files in corpus order, so that its output is sorted by the documents' order keys."""
    buckets: list[list[dict]] = [[] for _ in range(tasks)]
    loads = [0] * tasks
    for item in sorted(items, key=lambda it: (-it["bytes"], it["path"])):
        k = loads.index(min(loads))
        buckets[k].append(item)
        loads[k] += item["bytes"]
    return [sorted(bucket, key=lambda it: it["order"]) for bucket in buckets]


def default_tasks(items: list[dict]) -> int:
    """Pass-1 tasks when `corpus.tasks` is 0: one per file, up to AUTO_TASKS or one per TASK_BYTES of
    input, whichever is more. It depends on the input alone, never on the cores of the machine, so
    work interrupted on one machine resumes on another with the same split (datatrove's completion
    markers name tasks by rank)."""
    by_size = math.ceil(sum(item["bytes"] for item in items) / TASK_BYTES)
    return max(1, min(len(items), max(AUTO_TASKS, by_size)))


def harmful_lists(recipe) -> dict[str, WordList]:
    """The harmful-word list of each language that has one (`corpus.harmful_words`: a file, or ldnoobw)."""
    unknown = sorted(set(recipe.corpus.harmful_words) - set(recipe.language_codes))
    if unknown:
        raise FournilError(f"corpus.harmful_words: {unknown[0]} is not one of the recipe's languages ({', '.join(recipe.language_codes)})")
    return {lang: ldnoobw(lang) if given == LDNOOBW else read_word_list(recipe.resolve(given), given)
            for lang, given in sorted(recipe.corpus.harmful_words.items())}


def plan(ctx: StageContext) -> tuple[dict, dict]:
    recipe, cfg = ctx.recipe, ctx.recipe.corpus
    languages = list(recipe.language_codes)
    workers = cfg.workers or os.cpu_count() or 1
    items = []
    for source in recipe.sources:
        base = recipe.resolve(source.path)
        root = base if base.is_dir() else base.parent
        meta = source.model_dump(include={"name", "lang", "category", "license", "priority", "format", "text_field"})
        for path in recipe.source_files(source):
            items.append({"source": meta, "root": str(root), "path": str(path), "bytes": path.stat().st_size, "order": len(items)})
    tasks = cfg.tasks or default_tasks(items)
    settings_dir = str(recipe.resolve(cfg.settings_dir)) if cfg.settings_dir else None
    settings = {lang: load_settings(lang, Path(settings_dir) if settings_dir else None) for lang in languages}
    if cfg.langid.backend == "fasttext":
        thresholds = {lang: float(s["language_score"]) for lang, s in settings.items()}
    else:
        thresholds = {lang: cfg.langid.min_score for lang in languages}
    harmful = harmful_lists(recipe)
    by_chars = {lang: s.get("words") == "chars" for lang, s in settings.items()}
    work = ctx.out / "work"
    common = {"work": str(work), "languages": languages, "examples": cfg.examples_per_reason, "seed": recipe.seed}
    pass1 = {**common, "tasks": assign_files(items, tasks), "langid": cfg.langid.model_dump(),
             "thresholds": thresholds, "quality": cfg.quality, "settings_dir": settings_dir, "pii": cfg.pii,
             "decontaminate": [str(recipe.resolve(p)) for p in cfg.decontaminate], "decontaminate_ngram": cfg.decontaminate_ngram,
             "harmful_words": {lang: words.terms for lang, words in harmful.items()}, "harmful_max_share": cfg.harmful_max_share,
             "dedup": cfg.dedup.model_dump(), "by_chars": by_chars}
    pass2 = {**common, "out": str(ctx.out), "dedup": cfg.dedup.model_dump(), "heldout_fraction": cfg.heldout_fraction,
             "shard_documents": cfg.shard_documents, "by_chars": by_chars}
    sources = {}
    for item in items:
        entry = sources.setdefault(item["source"]["name"], {"files": 0, "bytes": 0})
        entry["files"] += 1
        entry["bytes"] += item["bytes"]
    info = {"workers": workers, "tasks": tasks, "files": len(items), "sources": sources, "thresholds": thresholds,
            "settings": {lang: {"origin": s.get("origin", "")} for lang, s in settings.items()},
            "harmful_lists": {lang: {"terms": len(words.terms), "sha256": list_digest(words.terms), "max_share": cfg.harmful_max_share,
                                     "source": words.source, "license": words.license} for lang, words in harmful.items()}}
    return {"pass1": pass1, "pass2": pass2}, info


def run(ctx: StageContext) -> dict:
    cfg = ctx.recipe.corpus
    check_readers([(s.name, ctx.recipe.source_files(s), s.format) for s in ctx.recipe.sources])
    plans, info = plan(ctx)
    for lang, s in info["settings"].items():
        if s["origin"].startswith("fallback"):
            ctx.log(f"[corpus] {lang}: no filter settings file; using language-neutral fallback rules (see docs/corpus.md)")
    make_identifier(tuple(plans["pass1"]["languages"]), cfg.langid.backend, cfg.langid.model_path)  # forked workers inherit it
    work = Path(plans["pass1"]["work"])
    workers, languages = info["workers"], plans["pass2"]["languages"]
    for name, step, tasks in (("pass1", CurateFiles(plans["pass1"]), info["tasks"]),
                              ("pass2", DedupLanguage(plans["pass2"]), len(languages))):
        logs = work / "logs" / name
        ctx.log(f"[corpus] {name}: {tasks} tasks on {min(workers, tasks)} workers ({cfg.executor}); datatrove's log: corpus/logs/{name}/datatrove.log")
        executor = make_executor([step], tasks, workers, logs, cfg.executor, cfg.executor_options, f"fournil-corpus-{name}")
        run_executor(executor, logs, tasks, f"corpus {DESCRIPTIONS[name]}", f"corpus {name}")

    ledger = Ledger(cfg.examples_per_reason)
    for path in sorted((work / "ledgers").glob("pass1-*.json")):
        ledger.merge(json.loads(path.read_text()))
    per_language = {}
    for lang in languages:
        data = json.loads((work / "ledgers" / f"pass2-{lang}.json").read_text())
        ledger.merge(data["ledger"])
        per_language[lang] = data["figures"]
    ledger.order = [s for s in STEP_ORDER if s in ledger.order]
    problems = ledger.unbalanced()
    if problems:
        raise RuntimeError("corpus accounting does not balance: " + "; ".join(problems[:5]))
    funnel = ledger.funnel()
    stats = {"per_language": per_language, "steps": funnel, "by_source": ledger.to_dict()["steps"],
             "examples": ledger.to_dict()["examples"], **{k: v for k, v in info.items() if k not in ("workers", "tasks")}}
    (ctx.out / "stats.json").write_text(json.dumps(stats, indent=1, ensure_ascii=False, sort_keys=True))  # the same bytes however many workers
    keep_logs(work / "logs", ctx.out / "logs")
    shutil.rmtree(work)
    return {"per_language": per_language, "steps": funnel, "settings": info["settings"], "sources": info["sources"],
            "harmful_lists": info["harmful_lists"], "workers": workers, "tasks": info["tasks"]}
