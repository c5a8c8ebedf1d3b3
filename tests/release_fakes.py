"""A realistic fake run folder (corpus → evaluate) for the release tests, and a stand-in HF export.

The figures follow docs/formats.md; they are invented here only so the release can be checked
against known values (every figure in the card must equal the one written below).
"""

from __future__ import annotations

import json
import math
import sys
import types
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from fournil.evaluate.stage import figures as evaluate_figures
from fournil.recipe import parse_recipe
from fournil.runs import StageContext, get_stage

REPO = Path(__file__).resolve().parents[1]
LANGS = {"fr": 0.45, "en": 0.35, "de": 0.2}
SOURCES = [
    ("fr-gimp", "fr/gimp-help.jsonl.zst", "fr", "docs", "GPL-3.0-or-later"),
    ("fr-wesnoth", "fr/wesnoth.jsonl.zst", "fr", "fiction", "GPL-2.0-or-later"),
    ("en-gimp", "en/gimp-help.jsonl.zst", "en", "docs", "GPL-3.0-or-later"),
    ("en-bible", "en/bible.jsonl.zst", "en", "religious", "public-domain"),
    ("de-gimp", "de/gimp-help.jsonl.zst", "de", "docs", "GPL-3.0-or-later"),
]

CORPUS = {
    "fr": {"documents": 1180, "characters": 2_415_930, "words": 402_118, "heldout_documents": 61},
    "en": {"documents": 1402, "characters": 2_208_455, "words": 398_004, "heldout_documents": 73},
    "de": {"documents": 655, "characters": 1_377_210, "words": 190_552, "heldout_documents": 34},
}
STEPS = [  # (step, {lang: (read, kept, {reason: dropped})})
    ("read", {"fr": (1300, 1296, {"invalid_utf8": 4}), "en": (1550, 1550, {}), "de": (720, 719, {"empty": 1})}),
    ("language_id", {"fr": (1296, 1271, {"other_language": 25}), "en": (1550, 1530, {"other_language": 20}), "de": (719, 700, {"low_score": 19})}),
    ("quality", {"fr": (1271, 1230, {"too_short": 30, "repetition": 11}), "en": (1530, 1461, {"too_short": 69}), "de": (700, 682, {"too_short": 18})}),
    ("pii", {"fr": (1230, 1230, {}), "en": (1461, 1461, {}), "de": (682, 682, {})}),
    ("decontaminate", {"fr": (1230, 1228, {"test_overlap": 2}), "en": (1461, 1461, {}), "de": (682, 682, {})}),
    ("dedup_exact", {"fr": (1228, 1180, {"exact": 48}), "en": (1461, 1402, {"exact": 59}), "de": (682, 655, {"exact": 27})}),
]
TOKENIZER = {
    "fr": {"fertility": 1.52, "split_word_share": 0.31, "bytes_per_token": 3.71, "chars_per_token": 3.58, "parity_vs_en": 1.09},
    "en": {"fertility": 1.39, "split_word_share": 0.24, "bytes_per_token": 3.98, "chars_per_token": 3.98, "parity_vs_en": 1.0},
    "de": {"fertility": 1.81, "split_word_share": 0.42, "bytes_per_token": 3.52, "chars_per_token": 3.47, "parity_vs_en": 1.17},
}
SHARDS = {  # (lang, source): (category, tokens, documents)
    ("fr", "fr-gimp"): ("docs", 420_113, 900), ("fr", "fr-wesnoth"): ("fiction", 198_870, 280),
    ("en", "en-gimp"): ("docs", 301_552, 700), ("en", "en-bible"): ("religious", 250_004, 702),
    ("de", "de-gimp"): ("docs", 377_410, 655),
}
EVALUATE = {
    "fr": {"bits_per_byte": 1.8731, "byte_perplexity": 3.6634, "unigram_bits_per_byte": 2.9012, "beats_unigram": True, "documents": 61, "bytes": 130_221},
    "en": {"bits_per_byte": 1.7302, "byte_perplexity": 3.3177, "unigram_bits_per_byte": 2.8544, "beats_unigram": True, "documents": 73, "bytes": 118_930},
    "de": {"bits_per_byte": 3.1025, "byte_perplexity": 8.5883, "unigram_bits_per_byte": 2.9871, "beats_unigram": False, "documents": 34, "bytes": 80_412},
}
TASKS = {  # results.json task entries (docs/evaluate.md)
    "translation_en_fr": {"task": "translation_en_fr", "output_type": "generate_until", "languages": ["en", "fr"], "num_fewshot": 3,
                          "examples": 20, "headline": "chrf", "metrics": {"chrf": {"value": 21.37, "stderr": 1.2, "examples": 20},
                                                                          "bleu": {"value": 3.05, "stderr": 0.4, "examples": 20}},
                          "unsupported_metrics": [], "skipped_lines": 0, "samples": [], "seconds": 1.0},
    "continuation_fr": {"task": "continuation_fr", "output_type": "multiple_choice", "languages": ["fr"], "num_fewshot": 0,
                        "examples": 20, "headline": "acc", "metrics": {"acc": {"value": 0.45, "stderr": 0.11, "examples": 20},
                                                                       "chance": 0.25},
                        "unsupported_metrics": [], "skipped_lines": 0, "samples": [], "seconds": 1.0},
}
CANARY_REPEATS = (1, 1, 10, 10, 100)
MEMORISATION_BY_REPEATS = {  # repeats: (canaries, extracted, suffix token accuracy, loss, loss ratio); 0 = controls
    0: (4, 0, 0.046875, 4.1906, 1.0), 1: (2, 0, 0.0625, 4.0553, 0.9677), 10: (2, 1, 0.53125, 2.9164, 0.6959),
    100: (1, 1, 1.0, 0.2147, 0.0512)}
MEMORISATION = {  # results.json["memorisation"] as fournil.evaluate.memorisation.measure returns it
    "by_repeats": {str(r): {"canaries": n, "extracted": x, "extraction_rate": x / n, "suffix_token_accuracy": acc,
                            "loss": loss, "loss_ratio": ratio} for r, (n, x, acc, loss, ratio) in MEMORISATION_BY_REPEATS.items()},
    "canaries": [], "control_loss": 4.1906}
TRAIN = {"steps": 200, "tokens": 13_107_200, "wall_seconds": 812.5,
         "device": {"name": "NVIDIA H100 80GB HBM3", "type": "cuda", "processes": 1}, "params": 33_000,
         "energy": {"kwh": 0.0912, "kwh_this_run": 0.0912, "kg_co2eq": 0.0052, "method": "NVML GPU energy counter + CPU time × 10 W per core (estimate)",
                    "grid_g_per_kwh": 57.0,
                    "codecarbon": {"kwh": 0.0874, "kg_co2eq": 0.00489, "kwh_this_run": 0.0874, "since_step": 0, "country": "FRA",
                                   "kwh_this_run_by_part": {"cpu": 0.0061, "gpu": 0.0788, "ram": 0.0025},
                                   "method": "codecarbon 3.3.2 OfflineEmissionsTracker, process tracking, FRA grid"}},
         "per_language": {"fr": {"final_loss": 2.913}, "en": {"final_loss": 2.804}, "de": {"final_loss": 3.377}}}
LOG_EVERY = 10


def log_energy(step: int) -> dict:
    """The trainer's energy fields of a step line: cumulative, on the steps where it read its records."""
    if step % LOG_EVERY:
        return {"energy_kwh": None, "kg_co2eq": None}
    kwh = TRAIN["energy"]["kwh"] * step / TRAIN["steps"]
    return {"energy_kwh": kwh, "kg_co2eq": kwh * TRAIN["energy"]["grid_g_per_kwh"] / 1000}


HF_CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 192, "vocab_size": 512,
             "max_position_embeddings": 256, "rope_theta": 10000.0, "tie_word_embeddings": True}


def recipe(train: dict | None = None, **release):
    data = {
        "name": "demo-fake",
        "description": "A fake bake for the release tests.",
        "languages": LANGS,
        "sources": [{"name": n, "path": f"data/sample/{p}", "lang": lang, "category": c, "license": lic}
                    for n, p, lang, c, lic in SOURCES],
        "corpus": {"decontaminate": ["data/sample/parallel/en-fr.test.tsv"]},
        "release": release,
        **({"train": train} if train else {}),
    }
    return parse_recipe(data, REPO)


def _manifest(folder: Path, stage: str, figures: dict, wall: float = 10.0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps({
        "stage": stage, "fingerprint": f"{stage}-fingerprint-0123456789abcdef", "recipe": "demo-fake",
        "inputs": {}, "figures": figures, "outputs": {}, "wall_seconds": wall, "finished_at": "2025-01-01T00:00:00Z",
        "resumed": False, "versions": {"python": "3.11", "fournil": "0.1.0", "torch": "2.13.0"}, "host": {},
    }))


def write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)


def make_run(run_dir: Path, drop: frozenset[str] = frozenset()) -> Path:
    """Write corpus → evaluate records under run_dir; `drop` names files to leave out (e.g. "train/log.jsonl")."""
    steps = []
    for name, per in STEPS:
        per_language = {lang: {"documents_read": r, "characters_read": 2000 * r, "documents_kept": k, "characters_kept": 1900 * k,
                               "dropped": {why: {"documents": n, "characters": 100 * n} for why, n in d.items()},
                               "created": {}, "moved": {}, "counts": {"email": 3, "ip_address": 1} if name == "pii" and lang == "fr" else {}}
                        for lang, (r, k, d) in per.items()}
        steps.append({"step": name, "documents_read": sum(v["documents_read"] for v in per_language.values()),
                      "documents_kept": sum(v["documents_kept"] for v in per_language.values()), "per_language": per_language})
    examples = {name: {why: [{"id": f"{lang}-1", "lang": lang, "source": "x", "text": f"dropped by {name}: {why}"}]
                       for lang, (_, _, d) in per.items() for why in d} for name, per in STEPS}
    _manifest(run_dir / "corpus", "corpus", {"per_language": CORPUS, "steps": steps})
    write(run_dir / "corpus/stats.json", {"per_language": CORPUS, "steps": steps, "examples": examples})

    _manifest(run_dir / "tokenizer", "tokenizer", {"vocab_size": 512, "sha256": "f" * 64,
                                                   "special_tokens": {"bos": 0, "eos": 1, "pad": 2}, "per_language": TOKENIZER})
    write(run_dir / "tokenizer/tokenizer_report.json", {"languages": list(LANGS), "heldout": True, "parallel_pairs": 0,
                                                        "results": [{"name": "fournil", "vocab_size": 512, "per_language": TOKENIZER}]})
    write(run_dir / "tokenizer/tokenizer.json", {"version": "1.0", "model": {"type": "BPE"}})
    write(run_dir / "tokenizer/tokenizer_config.json", {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"})

    budget = TRAIN["tokens"]
    groups = []
    for (lang, source), (category, tokens, docs) in SHARDS.items():
        write(run_dir / f"mixture/shards/{lang}/{source}.json", {"dtype": "uint16", "tokens": tokens, "documents": docs,
              "tokenizer_sha256": "f" * 64, "lang": lang, "source": source, "category": category})
        lang_tokens = sum(t for (l2, _), (_, t, _) in SHARDS.items() if l2 == lang)
        planned = round(budget * LANGS[lang] * tokens / lang_tokens)
        groups.append({"key": f"{lang}/{source}", "lang": lang, "source": source, "category": category, "tokens": tokens,
                       "documents": docs, "planned_tokens": planned, "epochs": round(planned / tokens, 4), "shard": f"shards/{lang}/{source}"})
    mixture = {lang: {"documents": sum(g["documents"] for g in groups if g["lang"] == lang),
                      "tokens": sum(g["tokens"] for g in groups if g["lang"] == lang),
                      "planned_tokens": sum(g["planned_tokens"] for g in groups if g["lang"] == lang), "share": share}
               for lang, share in LANGS.items()}
    for m in mixture.values():
        m["epochs"] = m["planned_tokens"] / m["tokens"]
    _manifest(run_dir / "mixture", "mixture", {"per_language": mixture, "budget_tokens": budget, "canaries": 5})
    write(run_dir / "mixture/plan.json", {"budget_tokens": budget, "languages": list(LANGS), "groups": groups,
                                          "stages": [{"name": "main", "share": 1.0, "start_token": 0, "end_token": budget}]})
    write(run_dir / "mixture/canaries.json", [{"id": f"canary-{i}", "text": "zq" * 8, "token_ids": [5, 6], "repeats": r,
                                              "length": 16, "positions": [1]} for i, r in enumerate(CANARY_REPEATS)])

    _manifest(run_dir / "train", "train", TRAIN, wall=812.5)
    log = []
    for step in range(1, 201):
        loss = 6.2 * math.exp(-step / 60) + 2.8
        log.append({"step": step, "tokens": step * 65536, "loss": loss,
                    "loss_per_language": {"fr": loss + 0.1, "en": loss, "de": loss + 0.5},
                    "lr": 3e-3 * min(1, step / 20), "grad_norm": 1.0, "tokens_per_second": 16000.0 + step,
                    "mfu": 0.3, **log_energy(step)})
        if step % 50 == 0:
            log.append({"step": step, "tokens": step * 65536,
                        "eval": {"bits_per_byte": {lang: e["bits_per_byte"] + (200 - step) / 100 for lang, e in EVALUATE.items()}}})
    write(run_dir / "train/log.jsonl", "\n".join(json.dumps(r) for r in log) + "\n{not json\n")
    write(run_dir / "train/final/config.json", {"dim": 64, "n_layers": 2})
    (run_dir / "train/final").mkdir(parents=True, exist_ok=True)
    save_file({"tok_embeddings.weight": np.zeros((512, 64), np.float32), "layers.0.w": np.zeros((64, 64), np.float32)},
              str(run_dir / "train/final/model.safetensors"))

    results = {"model": "demo-fake", "languages": list(LANGS), "memorisation": MEMORISATION,
               "checkpoints": [{"name": "final", "step": TRAIN["steps"], "tokens_seen": TRAIN["tokens"],
                                "per_language": EVALUATE, "tasks": TASKS}]}
    _manifest(run_dir / "evaluate", "evaluate", evaluate_figures(results))  # the evaluate stage's own function
    write(run_dir / "evaluate/results.json", results)

    for name in drop:
        path = run_dir / name
        if path.is_file():
            path.unlink()
    return run_dir


def context(run_dir: Path, train: dict | None = None, **release) -> StageContext:
    ctx = StageContext(recipe=recipe(train, **release), run_dir=run_dir, stage=get_stage("release"), fingerprint="release-fp",
                       log=lambda message: None)
    ctx.out.mkdir(parents=True, exist_ok=True)
    return ctx


def fake_export_hf(model_or_folder, tokenizer_dir, out_dir) -> None:
    """Stands in for fournil.model.hf.export_hf: the files of a HF Llama folder, tiny weights."""
    out_dir = Path(out_dir)
    write(out_dir / "config.json", HF_CONFIG)
    save_file({"model.embed_tokens.weight": np.zeros((512, 64), np.float32),
               "model.norm.weight": np.ones((64,), np.float32)}, str(out_dir / "model.safetensors"))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        write(out_dir / name, (Path(tokenizer_dir) / name).read_text())
    write(out_dir / "generation_config.json", {"bos_token_id": 0, "eos_token_id": 1})


FAKE_PARAMETERS = 512 * 64 + 64


def install_fake_hf(monkeypatch) -> None:
    module = types.ModuleType("fournil.model.hf")
    module.export_hf = fake_export_hf
    monkeypatch.setitem(sys.modules, "fournil.model.hf", module)


__all__ = ["make_run", "context", "install_fake_hf", "FAKE_PARAMETERS", "CORPUS", "EVALUATE", "TOKENIZER", "TRAIN", "SHARDS",
           "TASKS", "MEMORISATION_BY_REPEATS", "STEPS", "log_energy", "LOG_EVERY"]
