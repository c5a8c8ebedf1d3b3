"""The model card: README.md with the Hub's YAML metadata, then the sections people look for."""

from __future__ import annotations

import yaml

from fournil.release.render import human, num, render

ARCHITECTURE_KEYS = {  # config.json fields shown, by the architecture written
    "LlamaForCausalLM": ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                         "intermediate_size", "vocab_size", "max_position_embeddings", "rope_theta", "tie_word_embeddings"),
    "BloomForCausalLM": ("hidden_size", "n_layer", "n_head", "vocab_size", "seq_length", "layer_norm_epsilon", "tie_word_embeddings"),
}
ARCHITECTURE_NAMES = {"LlamaForCausalLM": "Llama", "BloomForCausalLM": "BLOOM"}
EVAL_METRICS = (("bits_per_byte", "bits per byte"), ("byte_perplexity", "byte perplexity"),
                ("unigram_bits_per_byte", "unigram baseline bits per byte"))


def model_index(facts: dict) -> list[dict]:
    """One model-index result per language evaluated on the held-out split, and per recorded task score."""
    results = []
    for lang in facts["languages"]:
        recorded = facts["evaluate"]["per_language"][lang]
        metrics = [{"type": key, "name": name, "value": recorded[key]} for key, name in EVAL_METRICS
                   if isinstance(recorded.get(key), int | float)]
        if metrics:
            results.append({
                "task": {"type": "text-generation", "name": "Language modelling"},
                "dataset": {"type": f"{facts['recipe']}-heldout", "name": f"{facts['recipe']} held-out documents ({lang})",
                            "config": lang, "split": "heldout"},
                "metrics": metrics,
            })
    hub = {r["task"]: r["dataset"] for r in facts["evaluate"].get("task_rows") or [] if r.get("dataset") and r["dataset"].get("path")}
    for task, per_language in sorted(task_scores(facts).items()):
        for lang, scores in sorted(per_language.items()):
            dataset = {"type": task, "name": f"{task} ({lang})", "config": lang}
            if task in hub:  # an lm-eval task: the Hub dataset it reads, so the Hub links the score to it
                dataset = {"type": hub[task]["path"], "name": f"{task} ({lang})",
                           **{k: v for k, v in (("config", hub[task].get("name")), ("split", hub[task].get("split"))) if v}}
            results.append({
                "task": {"type": "text-generation", "name": task},
                "dataset": dataset,
                "metrics": [{"type": metric, "value": value} for metric, value in scores.items()],
            })
    return [{"name": facts["name"], "results": results}] if results else []


def task_scores(facts: dict) -> dict[str, dict[str, dict[str, float]]]:
    """Numeric task scores recorded as tasks[task][lang][metric] = value."""
    found: dict = {}
    tasks = facts["evaluate"]["tasks"]
    for task, per_language in (tasks.items() if isinstance(tasks, dict) else ()):
        for lang, scores in (per_language.items() if isinstance(per_language, dict) else ()):
            numeric = {m: v for m, v in (scores.items() if isinstance(scores, dict) else ())
                       if isinstance(v, int | float) and not isinstance(v, bool)}
            if numeric:
                found.setdefault(task, {})[lang] = numeric
    return found


def co2_eq_emissions(facts: dict) -> dict | None:
    """The Hub's co2_eq_emissions block (grams), only when the training run recorded its emissions."""
    train, sft = facts["train"], facts["sft"]
    if train["co2_kg"] is None:
        return None
    tuned = sft["tuned"] and sft["co2_kg"] is not None
    kinds = ("fine-tuning",) if tuned and sft["init_from"] else ("pre-training", "fine-tuning") if tuned else ("pre-training",)
    block = {
        "emissions": round(((sft["co2_kg"] if tuned else 0) + (0 if tuned and sft["init_from"] else train["co2_kg"])) * 1000, 3),
        "source": train["energy_method"],
        "training_type": " and ".join(kinds),
        "geographical_location": facts["release"]["training_location"],
        "hardware_used": train["hardware"],
    }
    return {k: v for k, v in block.items() if v is not None}


def metadata(facts: dict) -> dict:
    release = facts["release"]
    meta: dict = {
        "language": facts["languages"],
        "license": release["license"],
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "tags": list(dict.fromkeys(["fournil", "llama", "text-generation",
                                    *(["multilingual"] if len(facts["languages"]) > 1 else []),
                                    *(["conversational"] if facts["train"]["instruction_tuned"] else []), *release["tags"]])),
    }
    if release["datasets"]:
        meta["datasets"] = release["datasets"]
    index = model_index(facts)
    if index:
        meta["model-index"] = index
    emissions = co2_eq_emissions(facts)
    if emissions:
        meta["co2_eq_emissions"] = emissions
    return meta


def model_card(facts: dict, transparency: dict) -> str:
    front = yaml.safe_dump(metadata(facts), sort_keys=False, allow_unicode=True, width=1000)
    architecture = facts["model"].get("architecture") or "LlamaForCausalLM"
    body = render("card.md.j2", f=facts, t=transparency, architecture=architecture,
                  architecture_name=ARCHITECTURE_NAMES.get(architecture, "fournil"),
                  architecture_keys=ARCHITECTURE_KEYS.get(architecture, ()),
                  limitations=limitations(facts), repo_id=facts["release"]["repo_id"] or facts["name"])
    return f"---\n{front}---\n\n{body}"


def limitations(facts: dict) -> list[str]:
    """Limitations that follow from the records: languages not learnt, size, tuning, PII handling."""
    lines = []
    for lang in facts["languages"]:
        e = facts["evaluate"]["per_language"][lang]
        if e.get("beats_unigram") is False:
            lines.append(f"On {lang} the model does not beat a unigram baseline ({num(e.get('bits_per_byte'))} vs "
                         f"{num(e.get('unigram_bits_per_byte'))} bits per byte): it has not learnt that language.")
        elif e.get("bits_per_byte") is None:
            lines.append(f"The model was not evaluated on {lang} (no bits per byte recorded): its quality there is unknown.")
    lines.append(f"A small model ({human(facts['model']['parameters'])} parameters, {human(facts['train']['tokens'])} training "
                 "tokens): expect factual errors, repetition and incoherent text; do not rely on its output.")
    if not facts["train"]["instruction_tuned"]:
        lines.append("A base model: it was not tuned to follow instructions, to refuse harmful requests or to avoid "
                     "toxic or biased text, which its training data may contain.")
    categories = sorted({c for x in facts["mixture"]["per_language"].values() for c in x["by_category"]})
    if categories:
        lines.append(f"Trained on these kinds of text only: {', '.join(categories)}; it knows other domains poorly.")
    if facts["pii"] is True:
        lines.append("Personal information was scrubbed by rules (see datasheet.md); rule-based scrubbing misses some.")
    elif facts["pii"] is False:
        lines.append("No personal-information scrubbing was applied to the training data.")
    return lines


def datasheet(facts: dict, recipe) -> str:
    """datasheet.md; source paths are shown as the recipe gives them (relative), so no local folder leaks."""
    view = recipe.fingerprint_view()
    return render("datasheet.md.j2", f=facts,
                  sources=recipe.model_dump(mode="json")["sources"], parallel=recipe.model_dump(mode="json")["parallel"],
                  decontaminate=recipe.corpus.decontaminate, heldout_fraction=recipe.corpus.heldout_fraction,
                  seed=view["seed"])

