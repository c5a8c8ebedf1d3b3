"""The mixture stage: encode the curated corpus and the parallel pairs into token shards, plan the
budget across languages, sources and curriculum stages, and plant canaries.

Encoding runs as datatrove tasks, one per corpus file or parallel direction, on the executor the
recipe names (`mixture.executor`: local processes, Slurm or Ray), each writing a part shard under
`work/`; the parts of each (language, source) group are then joined in task order, so the shards
and the plan are the same bytes whatever ran them. An interrupted stage redoes only unfinished tasks,
and a stage resumed for a change of what only the plan reads (the shares, weights, stages, budget:
`runs.PLAN_SETTINGS`) keeps every shard and plans again: the plan is a pure function of the shards'
headers, so the bytes are those of a fresh run.
Writes `shards/<lang>/<source>.{bin,idx,json}`, `plan.json` and `canaries.json` (docs/mixture.md).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from pathlib import Path

from fournil.atomic import write_json
from fournil.corpus.documents import document_files, iter_documents
from fournil.errors import FournilError
from fournil.executors import completed, keep_logs, make_executor, run_executor
from fournil.mixture.canaries import make_canaries, slot_size
from fournil.mixture.encode import EncodeShards
from fournil.mixture.plan import Group, make_plan, table
from fournil.mixture.shards import dtype_for, join_shards, read_header
from fournil.parallel import language_name
from fournil.runs import StageContext, file_sha256
from fournil.tokenizer import load, special_ids


def _done(stem: Path, sha: str) -> dict | None:
    """The header of a shard finished by an interrupted run with the same tokenizer, else None."""
    try:
        header = read_header(stem)
    except FournilError:
        return None
    return header if header["tokenizer_sha256"] == sha and stem.with_suffix(".bin").is_file() else None


def encoding_tasks(ctx: StageContext, corpus_dir: Path) -> tuple[list[dict], list[dict]]:
    """The groups (one shard each: corpus (language, source), then each parallel file in both
    directions) and the encoding tasks (one per corpus file or parallel direction), in a fixed order."""
    recipe = ctx.recipe
    sources = {s.name: s for s in recipe.sources}
    groups: list[dict] = []
    tasks: list[dict] = []
    for lang in recipe.languages:
        files = document_files(corpus_dir, "train", lang)
        for name in sorted({p.parent.name for p in files}):
            if name in sources:
                category, weight = sources[name].category, sources[name].weight
            else:
                category, weight = str(next(iter_documents(corpus_dir, "train", lang, name), {}).get("category", "general")), 1.0
            tasks += [{"group": len(groups), "documents": str(p)} for p in files if p.parent.name == name]
            groups.append({"lang": lang, "source": name, "category": category, "weight": weight, "pairs": None})
    for pair in recipe.parallel:
        a, b = pair.langs
        if any(g["source"] == pair.name and g["lang"] in pair.langs for g in groups):
            raise FournilError(f"parallel source {pair.name!r} has the name of a corpus source; rename it in the recipe")
        for src, tgt, flip in ((a, b, False), (b, a, True)):  # a→b is a document of b, b→a one of a
            tasks.append({"group": len(groups), "pairs": str(recipe.resolve(pair.path)), "langs": [a, b], "flip": flip,
                          "names": [language_name(src), language_name(tgt)], "template": recipe.mixture.parallel_template})
            groups.append({"lang": tgt, "source": pair.name, "category": "parallel", "weight": 1.0, "pairs": "b→a" if flip else "a→b"})
    return groups, tasks


def run(ctx: StageContext) -> dict:
    recipe, config = ctx.recipe, ctx.recipe.mixture
    corpus_dir, tokenizer_dir = ctx.input("corpus"), ctx.input("tokenizer")
    tokenizer = load(tokenizer_dir)
    sha = file_sha256(tokenizer_dir / "tokenizer.json")
    eos = special_ids(tokenizer_dir)["eos"]
    vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
    base = {"dtype": dtype_for(vocab_size).str, "tokenizer_sha256": sha}
    specs, tasks = encoding_tasks(ctx, corpus_dir)
    stems = [ctx.out / "shards" / g["lang"] / g["source"] for g in specs]
    done = {i for i, stem in enumerate(stems) if ctx.resuming and _done(stem, sha)}
    work = ctx.out / "work"
    logs = work / "logs"
    (logs / "completions").mkdir(parents=True, exist_ok=True)
    for rank, task in enumerate(tasks):  # a joined shard needs none of its tasks again
        if task["group"] in done:
            (logs / "completions" / f"{rank:05d}").touch()
    ran = set(range(len(tasks))) - completed(logs)
    t0 = time.time()
    if ran:
        workers = config.workers or os.cpu_count() or 1
        ctx.log(f"[mixture] encode: {len(tasks)} tasks ({len(ran)} to do) on {min(workers, len(tasks))} workers "
                f"({config.executor}); datatrove's log: mixture/logs/datatrove.log")
        plan = {"work": str(work), "tokenizer": str(tokenizer_dir), "tokenizer_sha256": sha, "eos": eos, "batch": config.encode_batch,
                "dtype": base["dtype"], "tasks": tasks}
        executor = make_executor([EncodeShards(plan)], len(tasks), workers, logs, config.executor, config.executor_options,
                                 "fournil-mixture-encode")
        run_executor(executor, logs, len(tasks), "mixture encode, tasks", "mixture encode")
    headers, encoded = [], 0
    ranks_of: dict[int, list[int]] = {}
    for rank, task in enumerate(tasks):
        ranks_of.setdefault(task["group"], []).append(rank)
    for i, (group, stem) in enumerate(zip(specs, stems)):
        if i in done:
            headers.append(read_header(stem))
            continue
        ranks = ranks_of[i]
        parts = [json.loads((work / "parts" / f"{rank:05d}.json").read_text()) for rank in ranks]
        counts = sum((Counter(part["skipped"]) for part in parts), Counter())
        encoded += sum(part["bytes"] for rank, part in zip(ranks, parts) if rank in ran)
        header = {**base, "lang": group["lang"], "source": group["source"], "category": group["category"],
                  "skipped": dict(sorted(counts.items()))}
        headers.append(join_shards(stem, [work / "parts" / f"{rank:05d}" for rank in ranks], header))
    encode_seconds = time.time() - t0
    keep_logs(logs, ctx.out / "logs")
    shutil.rmtree(work)
    pairs_read = {g["source"]: {"pairs": h["documents"], "skipped": h.get("skipped", {})}
                  for g, h in zip(specs, headers) if g["pairs"] == "a→b"}
    skipped = sum((Counter(h.get("skipped", {})) for g, h in zip(specs, headers) if not g["pairs"]), Counter())
    groups = [Group(g["lang"], g["source"], g["category"], h["tokens"], h["documents"], g["weight"]) for g, h in zip(specs, headers)]

    budget = recipe.train.max_steps * recipe.train.global_batch_tokens
    plan = make_plan(groups, recipe.languages, config, budget)
    canaries = make_canaries(tokenizer, config.canaries, budget, recipe.seed)
    plan.update({
        "seed": recipe.seed, "eos_id": eos, "vocab_size": vocab_size, "dtype": base["dtype"], "tokenizer_sha256": sha,
        "canary_slot": slot_size([c["length"] for c in canaries]) if canaries else None,
    })
    write_json(ctx.out / "plan.json", plan, indent=2)
    write_json(ctx.out / "canaries.json", canaries, indent=2)
    ctx.log(f"[mixture] plan for {budget:,} training tokens:\n{table(plan)}")
    planted = sum(c["repeats"] * (c["length"] + 2) for c in canaries)
    if planted > 0.01 * budget:
        ctx.log(f"[mixture] warning: canaries take {planted / budget:.1%} of the training tokens; "
                f"fine for a smoke test, too many for a real run (mixture.canaries)")

    per_language = {}
    for lang in recipe.languages:
        mine = [g for g in plan["groups"] if g["lang"] == lang]
        tokens = sum(g["tokens"] for g in mine)
        planned = sum(g["planned_tokens"] for g in mine)
        per_language[lang] = {
            "documents": sum(g["documents"] for g in mine), "tokens": tokens, "planned_tokens": planned,
            "share": planned / budget, "epochs": planned / tokens if tokens else 0.0,
            "max_group_epochs": max((g["epochs"] for g in mine), default=0.0),
        }
    return {
        "per_language": per_language,
        "budget_tokens": budget,
        "tokens": sum(g.tokens for g in groups),
        "groups": len(groups),
        "stages": [s["name"] for s in plan["stages"]],
        "dtype": base["dtype"],
        "tokenizer_sha256": sha,
        "encode_mb_per_s": round(encoded / 1e6 / encode_seconds, 2) if encoded else None,
        "shards_encoded": len(specs) - len(done),
        "shards_kept": len(done),
        "skipped_documents": dict(sorted(skipped.items())),
        "parallel": pairs_read,
        "canaries": len(canaries),
        "canary_insertions": sum(c["repeats"] for c in canaries),
    }
