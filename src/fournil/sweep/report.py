"""The sweep's comparison: `runs/<sweep>/sweep.json` (every figure), `sweep.md` (the tables) and
`sweep.html` (the tables and plots, one static page, as the bake report)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2

from fournil.release.render import duration, human, num, sig
from fournil.sweep.config import SEED_FIELD
from fournil.sweep.plots import all_plots

_ENV = jinja2.Environment(loader=jinja2.PackageLoader("fournil.sweep", "templates"), autoescape=True,
                          undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def spread(value: dict | None, digits: int = 3) -> str:
    """mean ± std (over seeds), or the mean alone for one seed."""
    if not value:
        return "–"
    text = f"{value['mean']:.{digits}f}"
    return text + (f" ± {value['std']:.{digits}f}" if value["n"] > 1 else "")


def shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def rows(data: dict) -> tuple[list[str], list[list[str]]]:
    """The settings table: varied values, points finished, bits per byte per language, tasks, costs, front."""
    fields = [f for f in data["fields"] if f != SEED_FIELD]
    tasks = sorted({t for s in data["settings"] for t in s["tasks"]})
    status = {p["name"]: p["status"] for p in data["points"]}
    header = [*fields, "finished", *(f"{lang} bits/byte" for lang in data["languages"]), *tasks,
              "tokens", "wall time", "kWh", "Pareto"]
    body = []
    for s in data["settings"]:
        done = sum(status[name] == "finished" for name in s["points"])
        w = s["wall_seconds"]
        body.append([*(shown(s["values"][f]) for f in fields), f"{done}/{len(s['points'])}",
                     *(spread(s["bits_per_byte"][lang]) for lang in data["languages"]),
                     *(spread(s["tasks"].get(t)) for t in tasks),
                     human(s["tokens"]["mean"]) if s["tokens"] else "–", duration(w["mean"]) if w else "–",
                     sig(s["energy_kwh"]["mean"]) if s["energy_kwh"] else "–", "★" if s["pareto"] else ""])
    return header, body


def stage_rows(data: dict) -> list[list[str]]:
    runs = data["stage_runs"]
    rows = [[stage, str(runs["planned"][stage]), str(runs["made"][stage]), str(runs["points"])] for stage in runs["planned"]]
    if "shards_encoded" in runs and "mixture" in runs["planned"]:  # mixtures that differ only in their plan share their shards
        rows.insert(list(runs["planned"]).index("mixture") + 1, ["mixture: token shards encoded", str(runs["shards_encoded"]["planned"]), str(runs["shards_encoded"]["made"]),
                        str(runs["points"])])
    return rows


def table(header: list[str], body: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in body]


def markdown(data: dict, how: str) -> str:
    header, body = rows(data)
    lines = [f"# Sweep {data['sweep']}", "",
             f"Recipe `{data['recipe']}`" + (f" at proxy scale {data['proxy']}" if data["proxy"] else "")
             + f"; varied: {', '.join(data['fields'])}" + (" (zipped)" if data["zip"] else "")
             + (f"; {data['seeds']} training seeds per setting, mean ± standard deviation" if data["seeds"] > 1 else "") + ".",
             "", f"Reproduce: `{how}`", "", "## Results", "", *table(header, body), "",
             "★: on the Pareto front of the languages' held-out bits per byte (no other setting is as good in every "
             "language and better in one). Plots: sweep.html.", "", "## Stages",
             "", *table(["stage", "runs planned", "runs made", "points"], stage_rows(data)), "",
             f"Stage wall time, each shared stage once: {duration(data['wall_seconds']['stages_run'])}; "
             f"the points baked one by one: {duration(data['wall_seconds']['points_by_hand'])}.", ""]
    failed = [p for p in data["points"] if p["status"] != "finished"]
    if failed:
        lines += ["## Points not finished", ""] + [f"- {p['name']}: {p['error'] or 'not run yet'}" for p in failed] + [""]
    return "\n".join(lines)


def write(data: dict, folder: Path, how: str) -> dict[str, str | None]:
    """Write sweep.json, sweep.md and sweep.html in `folder`; returns the plots drawn (None: not recorded)."""
    plots = all_plots(data)
    data = {**data, "plots": {name: uri is not None for name, uri in plots.items()}, "command": how}
    (folder / "sweep.json").write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (folder / "sweep.md").write_text(markdown(data, how), encoding="utf-8")
    header, body = rows(data)
    html = _ENV.get_template("sweep.html.j2").render(d=data, header=header, body=body, stages=stage_rows(data), plots=plots,
                                                     how=how, duration=duration, num=num)
    (folder / "sweep.html").write_text(html, encoding="utf-8")
    return plots
