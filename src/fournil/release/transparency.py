"""The transparency checklist: all 100 indicators of the Foundation Model Transparency Index v1.0.

Each indicator (`fournil.release.fmti`) is met, not met, or needs a person. One the run can prove is
met when every record its evidence names exists (each listed with file, field and whether it was
found), and not met otherwise. Any other is a statement: met when the recipe's `release:` field for
it says something (the evidence is that field and its text), else it needs a person, with the field
to fill in its to-do. Nothing is met without its evidence; the score is the number met, over 100.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fournil.release.fmti import INDICATORS, statement_field
from fournil.release.records import Records

MET, NOT_MET, NEEDS_HUMAN = "met", "not met", "needs a human"


def lookup(obj: Any, dotted: str) -> Any:
    """obj["a"]["b"]... for "a.b", where a list of records is also searched by its `step` name; None when missing."""
    for part in dotted.split(".") if dotted else ():
        if isinstance(obj, dict) and part in obj:
            obj = obj[part]
        elif isinstance(obj, list) and part.isdigit() and int(part) < len(obj):
            obj = obj[int(part)]
        elif isinstance(obj, list):
            obj = next((o for o in obj if isinstance(o, dict) and o.get("step") == part), None)
        else:
            return None
    return obj


def _recorded(value: Any) -> bool:
    return value not in (None, "", [], {})


def _present(stage: str, file: str, field: str, records: Records, recipe_data: dict, release_dir: Path) -> bool:
    if stage == "recipe":
        value = lookup(recipe_data, field)
        if field == "sources":  # every source must name its licence
            return bool(value) and all(s.get("license") for s in value)
        return _recorded(value)
    if stage == "release":
        path = release_dir / file
        if not path.is_file() or not field:
            return path.is_file()
        try:
            return _recorded(lookup(json.loads(path.read_text(encoding="utf-8")), field))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return False
    if file.endswith(".jsonl"):
        return bool(records.jsonl(stage, file))
    if not field:
        folder = records.dir(stage)
        return folder is not None and (folder / file).is_file()
    return _recorded(lookup(records.json(stage, file), field))


def checklist(records: Records, recipe, release_dir: Path) -> dict[str, Any]:
    """transparency.json: the 100 indicators with status and evidence, the score over 100, and the team's to-do list."""
    data = recipe.model_dump()
    indicators = []
    for domain, subdomain, name, source in INDICATORS:
        entry: dict[str, Any] = {"domain": domain, "subdomain": subdomain, "indicator": name}
        if isinstance(source, str):
            field = statement_field(name, source)
            statement = lookup(data, field)
            if _recorded(statement):
                entry |= {"status": MET, "evidence": [{"file": "recipe", "field": field, "recorded": True, "statement": statement}]}
            else:
                entry |= {"status": NEEDS_HUMAN, "evidence": [], "todo": f"state it in the recipe's {field}"}
        else:
            found = [_present(s, f, k, records, data, release_dir) for s, f, k in source]
            entry |= {"status": MET if all(found) else NOT_MET,
                      "evidence": [{"file": "recipe" if s == "recipe" else f"{s}/{f}", "field": k, "recorded": ok}
                                   for (s, f, k), ok in zip(source, found)]}
        indicators.append(entry)
    counts = {status: sum(i["status"] == status for i in indicators) for status in (MET, NOT_MET, NEEDS_HUMAN)}
    return {
        "framework": "Foundation Model Transparency Index v1.0 (Bommasani et al., 2023): 100 indicators",
        "score": {"met": counts[MET], "not_met": counts[NOT_MET], "needs_human": counts[NEEDS_HUMAN],
                  "total": len(indicators), "percent": round(100 * counts[MET] / len(indicators), 1)},
        "by_domain": {d: f"{sum(i['status'] == MET for i in indicators if i['domain'] == d)}/"
                         f"{sum(i['domain'] == d for i in indicators)}" for d in ("upstream", "model", "downstream")},
        "indicators": indicators,
        "todo": [{"indicator": i["indicator"], "todo": i["todo"]} for i in indicators if i["status"] == NEEDS_HUMAN],
    }
