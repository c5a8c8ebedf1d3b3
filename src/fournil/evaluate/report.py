"""results.md: the results as markdown tables (per language, per task, per checkpoint, chat, memorisation)."""

from __future__ import annotations

import math
from typing import Any


def _num(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}g}"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c if isinstance(c, str) else _num(c) for c in row) + " |" for row in rows]
    return lines + [""]


def markdown(results: dict[str, Any]) -> str:
    lines = [f"# Evaluation of {results.get('model', 'the model')}", ""]
    checkpoints = results.get("checkpoints") or []
    if checkpoints:
        last = checkpoints[-1]
        lines += [f"## Bits per byte on held-out documents ({last['name']}, {_num(last.get('tokens_seen'))} tokens seen)", "",
                  "Lower is better; the unigram baseline is the training token frequencies scored on the same text.", ""]
        lines += _table(["language", "documents", "bytes", "bits/byte", "byte perplexity", "unigram bits/byte", "beats unigram"],
                        [[lang, r.get("documents"), r.get("bytes"), r.get("bits_per_byte"), r.get("byte_perplexity"),
                          r.get("unigram_bits_per_byte"), r.get("beats_unigram")] for lang, r in last["per_language"].items()])
        if last.get("tasks"):
            lines += ["## Tasks", ""]
            rows = []
            for name, t in last["tasks"].items():
                for metric, m in t["metrics"].items():
                    if isinstance(m, dict):
                        rows.append([name, ", ".join(t["languages"]) or "–", t["num_fewshot"], metric, m.get("value"),
                                     m.get("stderr"), m.get("examples", t["examples"])])
                if "chance" in t["metrics"]:
                    rows.append([name, ", ".join(t["languages"]) or "–", t["num_fewshot"], "chance", t["metrics"]["chance"], None, t["examples"]])
            lines += _table(["task", "languages", "shots", "metric", "value", "stderr", "examples"], rows)
    skipped = (results.get("harness") or {}).get("skipped") or {}
    if skipped:
        lines += ["lm-eval tasks not run:", "", *[f"- {name}: {why}" for name, why in skipped.items()], ""]
    if len(checkpoints) > 1:
        langs = list(checkpoints[-1]["per_language"])
        tasks = [(name, t.get("headline")) for name, t in checkpoints[-1].get("tasks", {}).items()]
        lines += ["## Over training", ""]
        lines += _table(["checkpoint", "tokens seen", *[f"{lang} bits/byte" for lang in langs], *[f"{n} {m}" for n, m in tasks]],
                        [[c["name"], c.get("tokens_seen"), *[c["per_language"][lang].get("bits_per_byte") for lang in langs],
                          *[c.get("tasks", {}).get(n, {}).get("metrics", {}).get(m, {}).get("value") for n, m in tasks]]
                         for c in checkpoints])
    lines += _chat(results.get("chat"))
    memo = results.get("memorisation")
    if memo:
        lines += ["## Memorisation of canaries", "",
                  "Extraction: greedy decoding from the first half gives the second half exactly. Loss ratio: loss per "
                  "token over that of never-planted control canaries (repeats 0); below 1 means remembered.", ""]
        lines += _table(["repeats", "canaries", "extracted", "extraction rate", "suffix token accuracy", "loss ratio"],
                        [[r, g["canaries"], g["extracted"], g["extraction_rate"], g["suffix_token_accuracy"], g["loss_ratio"]]
                         for r, g in memo["by_repeats"].items()])
    return "\n".join(lines)


def _chat(chat: dict | None) -> list[str]:
    """The chat scores: per prompt language, then the translation tasks asked in chat form."""
    if not chat:
        return []
    lines = ["## Chat", "", "Fidelity: the share of judged answers in the language of the prompt (fournil's language ID, line by line).", ""]
    lines += _table(["language", "conversations", "chrF", "ROUGE-L", "fidelity", "judged", "unjudged"],
                    [[lang, r["conversations"], r["chrf"]["value"], r["rougeL"]["value"], (r.get("fidelity") or {}).get("pass_rate"),
                      (r.get("fidelity") or {}).get("judged"), (r.get("fidelity") or {}).get("unjudged")]
                     for lang, r in chat["per_language"].items()])
    if chat.get("translation"):
        lines += ["Translation asked in chat form:", ""]
        lines += _table(["direction", "asked in", "examples", "chrF", "stderr", "in the target language", "too long"],
                        [[d, r["asked_in"], r["examples"], r["chrf"]["value"], r["chrf"].get("stderr"), r["fidelity"]["pass_rate"],
                          r["too_long"]] for d, r in chat["translation"].items()])
    return lines
