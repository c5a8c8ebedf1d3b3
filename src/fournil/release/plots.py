"""The report's plots, drawn with matplotlib (Agg) from the release facts and embedded as PNG data URIs.

Each function returns a data URI, or None when the records it needs are missing: the report then
says "not recorded" instead of drawing an empty or invented plot.
"""

from __future__ import annotations

import base64
import io

import matplotlib

from fournil.release.facts import energy_curve

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLOURS = ["#1f6f8b", "#e07a1f", "#3a9d5d", "#b8336a", "#7d5ba6", "#c9a227", "#4d4d4d", "#2a9fd6"]
plt.rcParams.update({"font.size": 10, "axes.spines.top": False, "axes.spines.right": False,
                     "axes.grid": True, "grid.alpha": 0.3, "axes.titleweight": "bold", "axes.titlesize": 11})


def _uri(fig) -> str:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=96)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _colour(i: int) -> str:
    return COLOURS[i % len(COLOURS)]


def funnel(facts: dict) -> str | None:
    """Documents left after each corpus step, one line per language."""
    lines = {lang: pts for lang, pts in facts["corpus"]["funnel"].items() if pts and any(v is not None for _, v in pts)}
    if not lines:
        return None
    fig, ax = plt.subplots(figsize=(9, 3.6))
    for i, (lang, points) in enumerate(lines.items()):
        ax.plot(range(len(points)), [v for _, v in points], marker="o", color=_colour(i), label=lang)
    names = [name for name, _ in next(iter(lines.values()))]
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
    ax.set_ylabel("documents")
    ax.set_title("Corpus funnel: documents left after each step")
    ax.legend(title="language")
    return _uri(fig)


def mixture(facts: dict) -> str | None:
    """Planned training tokens per language, split by category, and epochs per group."""
    per_language = facts["mixture"]["per_language"]
    langs = [lang for lang in facts["languages"] if per_language[lang]["by_category"]]
    groups = [g for g in facts["mixture"]["groups"] if isinstance(g.get("epochs"), int | float)]
    if not langs and not groups:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    categories = sorted({c for lang in langs for c in per_language[lang]["by_category"]})
    key = "planned_tokens" if all(cell["planned_tokens"] is not None for lang in langs
                                  for cell in per_language[lang]["by_category"].values()) else "tokens"
    bottom = [0.0] * len(langs)
    for i, category in enumerate(categories):
        values = [(per_language[lang]["by_category"].get(category) or {}).get(key) or 0 for lang in langs]
        left.bar(langs, values, bottom=bottom, color=_colour(i), label=category)
        bottom = [b + v for b, v in zip(bottom, values)]
    left.set_title("Training tokens planned" if key == "planned_tokens" else "Tokens available")
    left.set_ylabel("tokens")
    if categories:
        left.legend(title="category", fontsize=8)
    if groups:
        labels = [f"{g['lang']}/{g.get('source', '?')}" for g in groups]
        right.barh(labels, [g["epochs"] for g in groups], color=[_colour(facts["languages"].index(g["lang"]))
                                                                if g["lang"] in facts["languages"] else "#888" for g in groups])
        right.set_xlabel("epochs (times each group is read)")
        right.set_title("Epochs per group")
        right.invert_yaxis()
        right.tick_params(axis="y", labelsize=8)
    else:
        right.set_axis_off()
    return _uri(fig)


def tokenizer(facts: dict) -> str | None:
    """Fertility (tokens per word) and parity against English, per language."""
    per_language = facts["tokenizer"]["per_language"]
    panels = [(key, title) for key, title in (("fertility", "Fertility (tokens per word, lower is better)"),
                                              ("parity_vs_en", "Parity vs English (1.0 is fair)"))
              if any(isinstance(per_language[lang].get(key), int | float) for lang in facts["languages"])]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.2), squeeze=False)
    for ax, (key, title) in zip(axes[0], panels):
        langs = [lang for lang in facts["languages"] if isinstance(per_language[lang].get(key), int | float)]
        values = [per_language[lang][key] for lang in langs]
        ax.bar(langs, values, color=[_colour(facts["languages"].index(lang)) for lang in langs])
        for x, v in enumerate(values):
            ax.annotate(f"{v:.2f}", (x, v), ha="center", va="bottom", fontsize=9)
        if key == "parity_vs_en":
            ax.axhline(1.0, color="#444", linestyle="--", linewidth=1)
        ax.set_title(title)
    return _uri(fig)


def training(facts: dict) -> str | None:
    """Loss (overall and per language), learning rate and throughput against steps; energy against tokens seen."""
    curves = facts["curves"]
    if not curves["step"]:
        return None
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.4))
    loss, lr, speed, energy = axes.flat
    loss.plot(curves["step"], curves["loss"], color="#222", linewidth=1.6, label="all")
    for i, lang in enumerate(facts["languages"]):
        points = curves["loss_per_language"].get(lang)
        if points:
            loss.plot([s for s, _ in points], [v for _, v in points], color=_colour(i), linewidth=1, label=lang)
    loss.set_title("Training loss")
    loss.set_ylabel("cross-entropy (nats)")
    loss.legend(fontsize=8)
    panels = ((lr, "lr", "Learning rate", "lr", "step"), (speed, "tokens_per_s", "Throughput", "tokens / s", "step"),
              (energy, "energy_kwh", "Energy used (cumulative)", "kWh", "tokens seen"))
    for ax, key, title, unit, x in panels:
        pairs = energy_curve(curves) if key == "energy_kwh" else \
            [(s, v) for s, v in zip(curves["step"], curves[key]) if v is not None]
        if pairs:
            ax.plot([s for s, _ in pairs], [v for _, v in pairs], color="#1f6f8b", linewidth=1.2,
                    marker="." if key == "energy_kwh" else None)
            ax.set_ylabel(unit)
        else:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes, color="#888")
        ax.set_title(title)
        ax.set_xlabel(x)
    return _uri(fig)


def _bpb_history(facts: dict) -> dict[str, list[tuple[float, float]]]:
    """lang → (tokens seen, bits per byte) from the trainer's evaluations (train/log.jsonl)."""
    history: dict[str, list[tuple[float, float]]] = {}
    for e in facts["curves"]["eval"]:
        for lang, value in e["bits_per_byte"].items():
            if e["tokens"] is not None and isinstance(value, int | float):
                history.setdefault(lang, []).append((e["tokens"], value))
    return history


def evaluation(facts: dict) -> str | None:
    """Bits per byte per language next to the unigram baseline, and over tokens seen: the trainer's evaluations as lines,
    the evaluate stage's checkpoints as squares (both score the same held-out sample, so the squares sit on the lines)."""
    per_language = facts["evaluate"]["per_language"]
    langs = [lang for lang in facts["languages"] if isinstance(per_language[lang].get("bits_per_byte"), int | float)]
    history, scored = _bpb_history(facts), facts["evaluate"]["bpb_curves"]
    if not langs and not history and not scored:
        return None
    fig, (bars, lines) = plt.subplots(1, 2, figsize=(10, 3.6))
    width = 0.38
    for offset, key, label, colour in ((-width / 2, "bits_per_byte", "model", "#1f6f8b"),
                                       (width / 2, "unigram_bits_per_byte", "unigram baseline", "#bbbbbb")):
        xs = [i + offset for i, lang in enumerate(langs) if isinstance(per_language[lang].get(key), int | float)]
        ys = [per_language[lang][key] for lang in langs if isinstance(per_language[lang].get(key), int | float)]
        bars.bar(xs, ys, width, label=label, color=colour)
    bars.set_xticks(range(len(langs)), langs)
    bars.set_ylabel("bits per byte (lower is better)")
    bars.set_title("Held-out bits per byte")
    bars.legend(fontsize=8)
    if history or scored:
        for i, lang in enumerate(facts["languages"]):
            points = sorted(history.get(lang, []))
            if points:
                lines.plot([t for t, _ in points], [v for _, v in points], marker="o", markersize=3, color=_colour(i),
                           label=f"{lang}, training")
            points = sorted(scored.get(lang, []))
            if points:
                lines.plot([t for t, _ in points], [v for _, v in points], linestyle="none", marker="s", markersize=8,
                           markerfacecolor="none", color=_colour(i), label=f"{lang}, evaluate stage")
        lines.set_xlabel("tokens seen")
        lines.set_ylabel("bits per byte")
        lines.set_title("Bits per byte over training")
        lines.legend(fontsize=8)
    else:
        lines.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=lines.transAxes, color="#888")
        lines.set_title("Bits per byte over training")
    return _uri(fig)


def tasks(facts: dict) -> str | None:
    """Each task's headline score against tokens seen: one panel per language (translation in its own), chance dashed.
    With only the final model scored, each task is one point and the panels say how to get curves."""
    curves = facts["evaluate"]["task_curves"]
    rows = [r for r in facts["evaluate"]["task_rows"] if curves.get(r["task"])]
    if not rows:
        return None
    single = all(len(curves[r["task"]]) == 1 for r in rows)
    panels: dict[str, list[dict]] = {}
    for r in rows:
        panels.setdefault("translation" if "-" in (r["languages"] or "") else r["languages"], []).append(r)
    fig, axes = plt.subplots(1, len(panels), figsize=(min(4 * len(panels), 16), 3.4), squeeze=False)
    for ax, (panel, members) in zip(axes[0], sorted(panels.items(), key=lambda p: (p[0] == "translation", p[0]))):
        for i, r in enumerate(members):
            points = sorted(curves[r["task"]])
            ax.plot([t for t, _ in points], [v for _, v in points], marker="o", color=_colour(i), label=r["task"])
            if r["chance"] is not None:
                ax.axhline(r["chance"], color=_colour(i), linestyle="--", linewidth=1)
        ax.set_title(panel if panel == "translation" else f"Tasks in {panel}")
        ax.set_xlabel("tokens seen" + ("\n(final model only; evaluate.checkpoints: all for curves)" if single else ""))
        ax.set_ylabel(", ".join(sorted({r["metric"] for r in members if r["metric"]})))
        ax.legend(fontsize=7)
    return _uri(fig)


def all_plots(facts: dict) -> dict[str, str | None]:
    return {"funnel": funnel(facts), "mixture": mixture(facts), "tokenizer": tokenizer(facts),
            "training": training(facts), "evaluation": evaluation(facts), "tasks": tasks(facts)}
