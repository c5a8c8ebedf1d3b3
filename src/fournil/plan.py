"""`fournil plan`: what a recipe will cost and whether it fits, before anything runs.

Parameters come from the model shape (`fournil.model.presets.count_params`); tokens are
`train.max_steps × train.global_batch_tokens`; tokens per source come from the run's mixture plan
when the mixture stage has run, else are estimated from the raw source files (UTF-8 bytes over
`BYTES_PER_TOKEN`, before curation). Memory per GPU, compute, energy and CO2 are estimates from
first principles (formulas in docs/plan.md); the recipe's `plan:` section names the hardware.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fournil.compressed import STREAM_ERRORS, byte_lines, read_all
from fournil.errors import FournilError
from fournil.hardware import GPU, gpu_named
from fournil.mixture.config import CurriculumStage
from fournil.mixture.plan import Group, make_plan
from fournil.model.presets import count_params, model_config
from fournil.parallel import read_pairs
from fournil.recipe import Recipe
from fournil.references import REFERENCES

CHINCHILLA_TOKENS_PER_PARAM = 20  # Hoffmann et al. 2022
EPOCHS_WARNING = 4  # Muennighoff et al. 2023: beyond ~4 epochs, repeated tokens are worth much less than new ones
BYTES_PER_TOKEN = 4.0  # estimate for a BPE of 32k+ on European languages, when nothing was measured
SAMPLE_BYTES = 4 * 2**20  # raw text read per source for an estimate; the rest is extrapolated by file size
DEFAULT_GPU, DEFAULT_MFU = "H100", 0.4
GROUPS_SHOWN = 6
CUDA_OVERHEAD_BYTES = 1.5e9  # CUDA context, kernels and allocator slack, per process
CE_CHUNK_BYTES = 2**26 * 4  # the fused head's float32 logits chunk (model/llama.py CE_CHUNK_LOGITS)
# Chinchilla's fit of loss to parameters and tokens (Hoffmann et al. 2022, approach 3)
FIT_E, FIT_A, FIT_B, FIT_ALPHA, FIT_BETA = 1.69, 406.4, 410.7, 0.34, 0.28


@dataclass
class Hardware:
    gpu: GPU
    gpus: int
    mfu: float
    mfu_source: str


def hardware(recipe: Recipe, run_dir: Path | None) -> Hardware:
    """The plan's GPU, count and MFU: the recipe's `plan:`, else the MFU this run measured, else defaults."""
    section = recipe.plan
    gpu = gpu_named(section.gpu or DEFAULT_GPU)
    if section.mfu is not None:
        return Hardware(gpu, section.gpus, section.mfu, "plan.mfu")
    measured = _train_figures(run_dir).get("mfu") if run_dir else None
    if measured:
        return Hardware(gpu, section.gpus, float(measured), "measured by this run's training")
    return Hardware(gpu, section.gpus, DEFAULT_MFU, f"assumed, typical of bf16 training; set plan.mfu")


def _train_figures(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "train" / "manifest.json").read_text()).get("figures") or {}
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}


def _raw_bytes(recipe: Recipe, source) -> int:
    """UTF-8 bytes of a source's text: read up to SAMPLE_BYTES, the rest extrapolated by file size."""
    files = recipe.source_files(source)
    text_bytes = disk_read = 0
    for path in files:
        if text_bytes >= SAMPLE_BYTES:
            break
        try:
            if ".json" in path.name:
                for line in byte_lines(path):
                    try:
                        record = json.loads(line)
                    except (json.JSONDecodeError, UnicodeDecodeError):
                        continue
                    value = record.get(source.text_field) if isinstance(record, dict) else None
                    text_bytes += len(value.encode("utf-8", "replace")) if isinstance(value, str) else 0
            else:
                text_bytes += len(read_all(path))
        except STREAM_ERRORS:
            continue
        disk_read += path.stat().st_size
    disk_total = sum(p.stat().st_size for p in files)
    return round(text_bytes * disk_total / disk_read) if disk_read else 0


def source_groups(recipe: Recipe, run_dir: Path | None) -> tuple[list[Group], str]:
    """The mixture's (language, source) groups with their tokens, and where the counts come from."""
    plan_path = run_dir / "mixture" / "plan.json" if run_dir else None
    if plan_path and plan_path.is_file():
        measured = json.loads(plan_path.read_text())
        weights = {s.name: s.weight for s in recipe.sources}
        groups = [Group(g["lang"], g["source"], g["category"], g["tokens"], g["documents"], weights.get(g["source"], 1.0))
                  for g in measured["groups"]]
        return groups, f"measured by the mixture stage ({plan_path})"
    groups = [Group(s.lang, s.name, s.category, round(_raw_bytes(recipe, s) / BYTES_PER_TOKEN), 0, s.weight)
              for s in recipe.sources]
    for pair in recipe.parallel:
        pairs, _ = read_pairs(recipe.resolve(pair.path), *pair.langs)
        tokens = round(sum(len(a.encode()) + len(b.encode()) for a, b in pairs) / BYTES_PER_TOKEN)
        groups += [Group(lang, pair.name, "parallel", tokens, len(pairs)) for lang in pair.langs]
    return groups, f"estimated from the raw files at {BYTES_PER_TOKEN:g} bytes a token, before curation"


def activations_per_token(config, compiled: bool, checkpointing: str = "none") -> float:
    """Bytes of activations one token of a micro-batch holds for backward under bf16 autocast, as autograd
    was seen to keep them (fournil.train.memory, `benchmarks/memory.py`). SDPA gets k and v expanded to
    every head, so grouped-query attention saves none; the compiled head keeps its bf16 logits' gradient."""
    d, f = config.dim, config.ffn_dim
    layer, rest = (18 * d + 6 * f, 2 * config.vocab_size + 4 * d) if compiled else (34 * d + 8 * f, 12 * d)
    kv = config.n_kv_heads * config.head_dim
    kept = {"none": layer, "ops": 6 * d + 2 * (d + 2 * kv) + 4 * f, "selective": (layer + 4 * d) / 2, "full": 4 * d}[checkpointing]
    return kept * config.n_layers + (layer if kept != layer else 0) + rest


def muon_matrices(config) -> int:  # noqa: ANN001
    """Entries of the blocks' 2-D weights, the matrices Muon holds (fournil.train.optim.hidden_matrices)."""
    d, hd, f = config.dim, config.head_dim, config.ffn_dim
    return config.n_layers * (d * hd * (2 * config.n_heads + 2 * config.n_kv_heads) + (2 if config.gelu_mlp else 3) * d * f)


def memory_per_gpu(recipe: Recipe, gpus: int) -> dict[str, float]:
    """Bytes a GPU holds while training: weights, gradients and the optimiser's state in float32 (sharded
    by FSDP; AdamW keeps two moments a parameter, Muon one momentum for each matrix it holds), autocast's
    bf16 copies of the weights, the activations of one micro-batch (fewer with activation checkpointing),
    the head's gradient buffers and the CUDA overhead."""
    return training_bytes(model_config(recipe.model, recipe.tokenizer.vocab_size), recipe.train, gpus)


def training_bytes(config, train, gpus: int) -> dict[str, float]:  # noqa: ANN001
    """memory_per_gpu for a model shape and a `train:` section (what benchmarks/memory.py checks)."""
    params = count_params(config)
    states = 16.0 * params  # 4 bytes each: weights, gradients, Adam's two moments
    if train.optimizer == "muon":
        states -= 4.0 * muon_matrices(config)  # one momentum instead of two moments
    sharded = train.parallelism == "fsdp" and gpus > 1
    if sharded:
        layer = count_params(config, non_embedding=True) / config.n_layers
        states = states / gpus + 2 * 4 * layer * 2  # FSDP2 gathers a block's weights (and their gradients) whole
    weight_copies = 0.0 if sharded else 2.0 * params  # FSDP2 gathers bf16 weights a block at a time instead
    tokens = train.micro_batch_size * config.context_length
    activations = tokens * activations_per_token(config, train.compile != "off", train.activation_checkpointing)
    head = CE_CHUNK_BYTES + 4.0 * config.vocab_size * config.dim
    total = states + weight_copies + activations + head + CUDA_OVERHEAD_BYTES
    return {"states": states, "weight_copies": weight_copies, "activations": activations, "head": head,
            "overhead": CUDA_OVERHEAD_BYTES, "total": total, "sharded": sharded}


def loss_fit(params: float, tokens: float) -> float:
    return FIT_E + FIT_A / params**FIT_ALPHA + FIT_B / tokens**FIT_BETA


def smaller_models(params: float, tokens: float) -> list[dict[str, float]]:
    """Smaller models trained longer to the same fitted loss, and the compute-optimal one, with their
    training compute and inference cost relative to the recipe's (the LLaMA and CroissantLLM argument:
    a smaller model costs more to train but less at every token it serves)."""
    target = loss_fit(params, tokens)
    rows = []
    for factor in (0.75, 0.5, 0.25):
        n = params * factor
        gap = target - FIT_E - FIT_A / n**FIT_ALPHA
        d = (FIT_B / gap) ** (1 / FIT_BETA) if gap > 0 else math.inf
        rows.append({"parameters": n, "tokens": d, "train_compute": n * d / (params * tokens), "inference_cost": factor})
    optimal = math.sqrt(params * tokens / CHINCHILLA_TOKENS_PER_PARAM)
    rows.append({"parameters": optimal, "tokens": optimal * CHINCHILLA_TOKENS_PER_PARAM, "train_compute": 1.0,
                 "inference_cost": optimal / params, "compute_optimal": True})
    return rows


def make(recipe: Recipe, run_dir: Path | None = None) -> dict[str, Any]:
    """The plan of a recipe as plain data (`format_plan` prints it)."""
    config = model_config(recipe.model, recipe.tokenizer.vocab_size)
    params, body = count_params(config), count_params(config, non_embedding=True)
    train = recipe.train
    tokens = train.max_steps * train.global_batch_tokens
    hw = hardware(recipe, run_dir)
    groups, counted = source_groups(recipe, run_dir)
    try:
        mixture, problem = make_plan(groups, recipe.languages, recipe.mixture, tokens, refuse=False), None
    except FournilError as error:  # e.g. a language fed only by paragraphs routed from other sources
        mixture, problem = {"groups": []}, str(error)
    languages = {}
    for lang, target in recipe.languages.items():
        mine = [g for g in mixture["groups"] if g["lang"] == lang]
        have, planned = sum(g["tokens"] for g in mine), sum(g["planned_tokens"] for g in mine)
        languages[lang] = {"target_share": target, "planned_tokens": planned, "share": planned / tokens if tokens else 0.0,
                           "available_tokens": have, "epochs": planned / have if have else math.inf}
    repeated = [{"group": g["key"], "epochs": g["epochs"]} for g in mixture["groups"] if g["epochs"] > EPOCHS_WARNING]
    stages, start = [], 0.0
    for stage in recipe.mixture.stages or [CurriculumStage(name="main", share=1.0)]:
        shares = stage.languages if stage.languages is not None else recipe.languages
        stages.append({"name": stage.name, "start_step": round(start * train.max_steps),
                       "end_step": round((start + stage.share) * train.max_steps),
                       "non_english": sum(v for k, v in shares.items() if k != "en")})
        start += stage.share
    decay_start = round(train.max_steps * (1 - train.decay_fraction)) if train.schedule == "wsd" else None
    per_step = train.micro_batch_size * config.context_length * hw.gpus
    accumulation = train.global_batch_tokens / per_step
    flops_per_token = 6.0 * (body + config.vocab_size * config.dim) + 12.0 * config.n_layers * config.dim * config.context_length
    flops = flops_per_token * tokens
    gpu_hours = flops / (hw.gpu.peak_bf16_flops * hw.mfu) / 3600
    kwh = gpu_hours * hw.gpu.watts * recipe.plan.pue / 1000
    memory = memory_per_gpu(recipe, hw.gpus)
    reference = REFERENCES.get(recipe.plan.reference) if recipe.plan.reference else None
    return {
        "recipe": recipe.name,
        "model": {"preset": recipe.model.preset, "parameters": params, "non_embedding_parameters": body,
                  "vocab_size": config.vocab_size, "context_length": config.context_length},
        "tokens": tokens, "tokens_per_parameter": tokens / params, "chinchilla_tokens": CHINCHILLA_TOKENS_PER_PARAM * params,
        "reference": None if reference is None else {
            "name": recipe.plan.reference, "title": reference.title, "source": reference.source,
            "parameters": reference.parameters, "tokens": reference.tokens, "tokens_per_parameter": reference.tokens / reference.parameters,
            "vocab_size": reference.vocab_size, "shares": reference.shares,
            "non_english_curriculum": list(reference.non_english_curriculum)},
        "data": {"counted": counted, "problem": problem, "languages": languages, "repeated_groups": repeated,
                 "groups": [{"group": g["key"], "tokens": g["tokens"], "planned_tokens": g["planned_tokens"], "epochs": g["epochs"]}
                            for g in mixture["groups"]]},
        "stages": stages, "wsd_decay_start_step": decay_start,
        "decay_stage": next((s["name"] for s in stages[1:] if s["start_step"] == decay_start), None),
        "batch": {"global_batch_tokens": train.global_batch_tokens, "tokens_per_micro_step": per_step,
                  "accumulation": max(1, round(accumulation)), "exact": accumulation >= 1 and accumulation == round(accumulation)},
        "memory": {**memory, "gpu": hw.gpu.name, "gpu_bytes": hw.gpu.memory_gb * 1e9, "gpus": hw.gpus,
                   "parallelism": train.parallelism, "activation_checkpointing": train.activation_checkpointing,
                   "micro_batch_size": train.micro_batch_size, "fits": memory["total"] <= hw.gpu.memory_gb * 1e9},
        "compute": {"flops": flops, "flops_per_token": flops_per_token, "gpu": hw.gpu.name, "gpus": hw.gpus,
                    "mfu": hw.mfu, "mfu_source": hw.mfu_source, "gpu_hours": gpu_hours, "days": gpu_hours / hw.gpus / 24,
                    "kwh": kwh, "pue": recipe.plan.pue, "grid_g_per_kwh": train.grid_g_per_kwh,
                    "kg_co2eq": kwh * train.grid_g_per_kwh / 1000},
        "smaller_models": smaller_models(params, tokens),
    }


def _n(x: float) -> str:
    """1.34B, 2.99T, 820M, 12.3k."""
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= size:
            return f"{x / size:.3g}{unit}"
    return f"{x:.3g}"


def _q(x: float) -> str:
    """A quantity to a sensible precision: 12,345 or 0.42."""
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.2g}"


def _gb(x: float) -> str:
    return f"{x / 1e9:.1f} GB"


def fit_advice(plan: dict) -> str:
    """What to change so that a plan that does not fit in memory would."""
    m = plan["memory"]
    options = []
    if m["parallelism"] == "ddp" and m["gpus"] > 1:
        options.append("set train.parallelism: fsdp (shards weights, gradients and moments over the GPUs)")
    if m["parallelism"] == "ddp" and m["gpus"] == 1 and m["states"] > m["gpu_bytes"]:
        options.append("plan more GPUs (plan.gpus) with train.parallelism: fsdp")
    if m["micro_batch_size"] > 1:
        options.append("lower train.micro_batch_size (gradient accumulation keeps the global batch)")
    if m["activation_checkpointing"] != "full":
        options.append("set train.activation_checkpointing: full")
    options.append("pick a GPU with more memory (plan.gpu)")
    return "; or ".join(options)


def memory_line(plan: dict) -> str:
    m = plan["memory"]
    verdict = "fits" if m["fits"] else "does NOT fit"
    return (f"memory: about {_gb(m['total'])} a GPU ({_gb(m['states'])} weights, gradients and moments"
            f"{' sharded' if m['sharded'] else ''}, {_gb(m['weight_copies']) + ' bf16 weight copies, ' if m['weight_copies'] else ''}"
            f"{_gb(m['activations'])} activations) under {m['parallelism']} on "
            f"{m['gpus']} × {m['gpu']} of {_gb(m['gpu_bytes'])}: {verdict}")


def short(plan: dict) -> str:
    """Four lines for `fournil run`."""
    ref = plan["reference"]
    c, data = plan["compute"], plan["data"]
    worst = max(data["groups"], key=lambda g: g["epochs"], default=None)
    epochs = f"at most {worst['epochs']:.2f} epochs ({worst['group']})" if worst else "no data"
    flagged = f", {len(data['repeated_groups'])} groups beyond {EPOCHS_WARNING}" if data["repeated_groups"] else ""
    return "\n".join([
        f"plan: {_n(plan['model']['parameters'])} parameters ({_n(plan['model']['non_embedding_parameters'])} non-embedding), "
        f"{_n(plan['tokens'])} tokens, {plan['tokens_per_parameter']:.3g} a parameter (Chinchilla ~{CHINCHILLA_TOKENS_PER_PARAM}"
        + (f"; {ref['title']} {ref['tokens_per_parameter']:.3g})" if ref else ")"),
        f"plan: data {epochs}{flagged}",
        "plan: " + memory_line(plan),
        f"plan: {_q(c['gpu_hours'])} GPU-hours on {c['gpu']} at MFU {c['mfu']:.0%}, {_q(c['kwh'])} kWh, "
        f"{_q(c['kg_co2eq'])} kg CO2eq",
    ])


def full(plan: dict) -> str:
    """The whole plan as text, for `fournil plan`."""
    m, c, data, ref = plan["model"], plan["compute"], plan["data"], plan["reference"]
    lines = [f"# plan of {plan['recipe']}", "",
             f"model: {m['preset']}, {m['parameters']:,} parameters ({m['non_embedding_parameters']:,} non-embedding), "
             f"vocabulary {m['vocab_size']:,}, context {m['context_length']:,}",
             f"tokens: {plan['tokens']:,} = {plan['tokens_per_parameter']:.3g} a parameter; Chinchilla's ~{CHINCHILLA_TOKENS_PER_PARAM} "
             f"would be {_n(plan['chinchilla_tokens'])}"]
    if ref:
        lines.append(f"reference: {ref['title']} ({ref['source']}): {_n(ref['parameters'])} parameters "
                     f"(this recipe {m['parameters'] / ref['parameters'] - 1:+.1%}), {_n(ref['tokens'])} tokens "
                     f"(this recipe {plan['tokens'] / ref['tokens'] - 1:+.1%}), {ref['tokens_per_parameter']:.3g} a parameter")
    lines += ["", f"data ({data['counted']}):",
              f"  {'language':<10}{'target':>8}{'planned':>10}{'tokens':>10}{'available':>11}{'epochs':>10}"]
    for lang, row in data["languages"].items():
        lines.append(f"  {lang:<10}{row['target_share']:>8.1%}{row['share']:>10.1%}{_n(row['planned_tokens']):>10}"
                     f"{_n(row['available_tokens']):>11}{row['epochs']:>10.3g}")
    if data["problem"]:
        lines.append(f"  not planned: {data['problem']}")
    ranked = sorted(data["groups"], key=lambda g: -g["epochs"])
    if ranked:
        lines.append("  most repeated groups: " + ", ".join(f"{g['group']} {g['epochs']:.3g}" for g in ranked[:GROUPS_SHOWN])
                     + (f" (and {len(ranked) - GROUPS_SHOWN} more; all with --json)" if len(ranked) > GROUPS_SHOWN else ""))
    if data["repeated_groups"]:
        lines.append(f"  warning: {len(data['repeated_groups'])} of {len(ranked)} groups repeat beyond {EPOCHS_WARNING} epochs, "
                     "where repeated data is worth much less than new (Muennighoff et al. 2023)")
    if len(plan["stages"]) > 1 or plan["wsd_decay_start_step"] is not None:
        lines.append("curriculum: " + "; ".join(f"{s['name']} steps {s['start_step']:,}–{s['end_step']:,} "
                                                f"({s['non_english']:.0%} non-English)" for s in plan["stages"]))
        if plan["wsd_decay_start_step"] is not None:
            tied = f": stage {plan['decay_stage']} starts with it" if plan["decay_stage"] else ""
            lines.append(f"  the wsd schedule decays from step {plan['wsd_decay_start_step']:,}{tied}")
    b = plan["batch"]
    lines.append(f"batch: {b['global_batch_tokens']:,} tokens a step = {b['accumulation']} accumulated × "
                 f"{b['tokens_per_micro_step']:,} (micro-batch × context × {plan['memory']['gpus']} GPUs)"
                 + ("" if b["exact"] else f"; not a whole multiple: training takes the nearest, "
                    f"{b['accumulation'] * b['tokens_per_micro_step']:,}"))
    lines += ["", memory_line(plan)]
    if not plan["memory"]["fits"]:
        lines.append(f"  to fit: {fit_advice(plan)}")
    lines += ["", f"compute: {c['flops']:.3g} FLOPs ({c['flops_per_token']:.3g} a token, 6N + attention); on {c['gpus']} × {c['gpu']} "
                  f"at MFU {c['mfu']:.0%} ({c['mfu_source']}): {_q(c['gpu_hours'])} GPU-hours, {_q(c['days'])} days",
              f"energy: {_q(c['kwh'])} kWh (board power × PUE {c['pue']:g}), {_q(c['kg_co2eq'])} kg CO2eq at "
              f"{c['grid_g_per_kwh']:g} g/kWh (train.grid_g_per_kwh)", "",
              "smaller models trained longer to the same loss (Chinchilla's fit; LLaMA's and CroissantLLM's argument):",
              f"  {'parameters':>12}{'tokens':>10}{'tokens/param':>14}{'train compute':>15}{'inference cost':>16}"]
    for row in plan["smaller_models"]:
        label = "  compute-optimal" if row.get("compute_optimal") else ""
        if math.isinf(row["tokens"]):
            lines.append(f"  {_n(row['parameters']):>12}  cannot reach this loss at any token count")
            continue
        lines.append(f"  {_n(row['parameters']):>12}{_n(row['tokens']):>10}{row['tokens'] / row['parameters']:>14.3g}"
                     f"{row['train_compute']:>14.2f}×{row['inference_cost']:>15.2f}×{label}")
    return "\n".join(lines)


def refuse_if_unfit(plan: dict) -> None:
    if not plan["memory"]["fits"]:
        raise FournilError(f"plan refused: {memory_line(plan)}; to fit, {fit_advice(plan)} (see `fournil plan RECIPE`)")
