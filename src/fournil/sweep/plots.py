"""The sweep's plots, drawn like the bake report's (`fournil.release.plots`): each metric against
each varied field, one line per language (or task) and per value of the other fields, error bars
over seeds, Pareto-front settings starred; and the languages' bits per byte against each other.
"""

from __future__ import annotations

import json
from typing import Any

from fournil.release.plots import _colour, _uri, plt
from fournil.sweep.config import SEED_FIELD

STYLES = ["-", "--", ":", "-."]
COSTS = (("tokens", "Tokens seen", "tokens"), ("wall_seconds", "Wall time, every stage", "seconds"),
         ("energy_kwh", "Energy", "kWh"))


def _numeric(values: list[Any]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def _label(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _series(settings: list[dict], field: str) -> list[tuple[str, list[dict]]]:
    """The settings split by the values of the other fields, each sorted along `field`."""
    groups: dict[str, list[dict]] = {}
    for s in settings:
        rest = {k: v for k, v in s["values"].items() if k != field}
        groups.setdefault(", ".join(f"{k.rsplit('.', 1)[-1]}={_label(v)}" for k, v in rest.items()), []).append(s)
    return [(name, members) for name, members in groups.items()]


def _positions(settings: list[dict], field: str) -> tuple[dict[str, float], list[Any]]:
    values = []
    for s in settings:
        if s["values"][field] not in values:
            values.append(s["values"][field])
    if _numeric(values):
        values.sort()
        return {_label(v): float(v) for v in values}, values
    return {_label(v): float(i) for i, v in enumerate(values)}, values


def _axis(ax, field: str, positions: dict[str, float], values: list[Any]) -> None:  # noqa: ANN001
    ax.set_xlabel(field)
    if not _numeric(values):
        ax.set_xticks(list(positions.values()), list(positions))
    elif len(values) <= 10:
        ax.set_xticks([float(v) for v in values], [_label(v) for v in values])


def _line(ax, positions: dict[str, float], field: str, members: list[dict], get, colour: str, style: str, label: str,  # noqa: ANN001
          star: bool) -> bool:
    points = sorted((positions[_label(s["values"][field])], get(s), s["pareto"]) for s in members if get(s))
    if not points:
        return False
    xs, spreads, front = [x for x, _, _ in points], [v for _, v, _ in points], [f for _, _, f in points]
    ax.errorbar(xs, [v["mean"] for v in spreads], yerr=[v["std"] for v in spreads], color=colour, linestyle=style,
                marker="o", capsize=3, label=label)
    if star and any(front):
        ax.plot([x for x, f in zip(xs, front) if f], [v["mean"] for v, f in zip(spreads, front) if f], linestyle="none",
                marker="*", markersize=14, color=colour, markeredgecolor="#222")
    return True


def bits_per_byte(data: dict, field: str) -> str | None:
    settings, languages = data["settings"], data["languages"]
    positions, values = _positions(settings, field)
    series = _series(settings, field)
    fig, ax = plt.subplots(figsize=(8, 4))
    drawn = False
    for i, lang in enumerate(languages):
        for j, (name, members) in enumerate(series):
            label = f"{lang}, {name}" if name else lang
            drawn |= _line(ax, positions, field, members, lambda s, lang=lang: s["bits_per_byte"].get(lang), _colour(i),
                           STYLES[j % len(STYLES)], label, star=True)
    if not drawn:
        plt.close(fig)
        return None
    ax.set_ylabel("held-out bits per byte (lower is better)")
    ax.set_title(f"Bits per byte against {field}" + (" (★ Pareto front)" if any(s["pareto"] for s in settings) else ""))
    _axis(ax, field, positions, values)
    ax.legend(fontsize=8)
    return _uri(fig)


def tasks(data: dict, field: str) -> str | None:
    settings = data["settings"]
    names = sorted({t for s in settings for t in s["tasks"]})
    if not names:
        return None
    positions, values = _positions(settings, field)
    series = _series(settings, field)
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, task in enumerate(names):
        for j, (name, members) in enumerate(series):
            _line(ax, positions, field, members, lambda s, task=task: s["tasks"].get(task), _colour(i), STYLES[j % len(STYLES)],
                  f"{task}, {name}" if name else task, star=False)
    ax.set_ylabel("headline score")
    ax.set_title(f"Task scores against {field}")
    _axis(ax, field, positions, values)
    ax.legend(fontsize=7)
    return _uri(fig)


def costs(data: dict, field: str) -> str | None:
    settings = data["settings"]
    if not any(s[key] for s in settings for key, _, _ in COSTS):
        return None
    positions, values = _positions(settings, field)
    series = _series(settings, field)
    fig, axes = plt.subplots(1, len(COSTS), figsize=(11, 3.4))
    for ax, (key, title, unit) in zip(axes, COSTS):
        drawn = False
        for j, (name, members) in enumerate(series):
            drawn |= _line(ax, positions, field, members, lambda s, key=key: s[key], _colour(j), "-", name or "all", star=False)
        if not drawn:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes, color="#888")
        ax.set_title(title)
        ax.set_ylabel(unit)
        _axis(ax, field, positions, values)
        if drawn and len(series) > 1:
            ax.legend(fontsize=7)
    return _uri(fig)


def front(data: dict) -> str | None:
    """Bits per byte of the first language against each other one, a dot per setting, the front joined."""
    languages = data["languages"]
    scored = [s for s in data["settings"] if all(s["bits_per_byte"].get(lang) for lang in languages)]
    if len(languages) < 2 or not scored:
        return None
    first, others = languages[0], languages[1:4]
    fig, axes = plt.subplots(1, len(others), figsize=(5 * len(others), 4), squeeze=False)
    for ax, other in zip(axes[0], others):
        for s in scored:
            x, y = s["bits_per_byte"][first], s["bits_per_byte"][other]
            ax.errorbar(x["mean"], y["mean"], xerr=x["std"], yerr=y["std"], marker="*" if s["pareto"] else "o",
                        markersize=12 if s["pareto"] else 6, color=_colour(0) if s["pareto"] else "#999", capsize=2)
            ax.annotate(", ".join(_label(v) for k, v in s["values"].items() if k != SEED_FIELD), (x["mean"], y["mean"]),
                        textcoords="offset points", xytext=(5, 4), fontsize=8)
        line = sorted((s["bits_per_byte"][first]["mean"], s["bits_per_byte"][other]["mean"]) for s in scored if s["pareto"])
        ax.plot([x for x, _ in line], [y for _, y in line], color=_colour(0), linewidth=1, alpha=0.6)
        ax.set_xlabel(f"{first} bits per byte")
        ax.set_ylabel(f"{other} bits per byte")
        ax.set_title(f"{first} against {other} (★ Pareto front)")
    return _uri(fig)


def all_plots(data: dict) -> dict[str, str | None]:
    """Every plot by name; None where the records it needs are missing."""
    plots: dict[str, str | None] = {}
    for field in [f for f in data["fields"] if f != SEED_FIELD]:
        plots[f"bits per byte against {field}"] = bits_per_byte(data, field)
        plots[f"task scores against {field}"] = tasks(data, field)
        plots[f"cost against {field}"] = costs(data, field)
    if len(data["settings"]) > 1:  # a seeds-only sweep has one setting: its spread is the result
        plots["Pareto front"] = front(data)
    return plots
