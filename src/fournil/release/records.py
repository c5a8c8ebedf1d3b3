"""Read-only access to the run's records, where a missing or unreadable record reads as None.

The release is written while the other stages evolve, so nothing here assumes a record exists: a
missing manifest, file or field is returned as None (shown as "not recorded"), noted in `missing`,
and never replaced by a guess. Bad lines in logs are skipped and counted by reason.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fournil.errors import FournilError
from fournil.runs import MANIFEST, figures_model, get_stage
from fournil.schema import Figures

NOT_RECORDED = "not recorded"


def dig(obj: Any, dotted: str) -> Any:
    """obj["a"]["b"]... for "a.b...", or None when any step is missing."""
    for part in dotted.split(".") if dotted else ():
        if isinstance(obj, dict) and part in obj:
            obj = obj[part]
        elif isinstance(obj, list) and part.isdigit() and int(part) < len(obj):
            obj = obj[int(part)]
        else:
            return None
    return obj


class Records:
    """The manifests, files and logs of the stages before release, read defensively."""

    def __init__(self, stage_dirs: dict[str, Path | None]):
        self.dirs = stage_dirs
        self.missing: list[str] = []
        self.skipped: Counter[str] = Counter()
        self._cache: dict[tuple[str, str], Any] = {}

    @classmethod
    def from_context(cls, ctx) -> Records:
        dirs: dict[str, Path | None] = {}
        for name in ctx.stage.needs:
            try:
                dirs[name] = ctx.input(name)
            except FournilError:
                dirs[name] = None
        records = cls(dirs)
        for name, path in dirs.items():
            if path is None:
                records.missing.append(f"{name}/{MANIFEST}")
        return records

    def dir(self, stage: str) -> Path | None:
        return self.dirs.get(stage)

    def json(self, stage: str, relpath: str) -> Any:
        """A JSON file of a stage, or None (noted as missing) when absent or corrupt."""
        key = (stage, relpath)
        if key not in self._cache:
            self._cache[key] = self._read_json(stage, relpath)
        return self._cache[key]

    def _read_json(self, stage: str, relpath: str) -> Any:
        folder = self.dirs.get(stage)
        if folder is None:
            return None
        try:
            return json.loads((folder / relpath).read_text(encoding="utf-8"))
        except FileNotFoundError:
            self.missing.append(f"{stage}/{relpath}")
        except (json.JSONDecodeError, UnicodeDecodeError, IsADirectoryError):
            self.missing.append(f"{stage}/{relpath} (unreadable)")
        return None

    def manifest(self, stage: str) -> dict | None:
        found = self.json(stage, MANIFEST)
        return found if isinstance(found, dict) else None

    def figures(self, stage: str) -> Figures:
        """A stage's figures as its typed model (`runs.STAGES`), read by the model's field names: a figure renamed
        in the model but not here is an AttributeError, not a silent "not recorded". Without a manifest every
        figure is None; figures of another shape are noted as unreadable and read so too."""
        key = (stage, "figures")
        if key not in self._cache:
            model = figures_model(get_stage(stage))
            raw = dig(self.manifest(stage), "figures")
            try:
                self._cache[key] = model.model_validate(raw if isinstance(raw, dict) else {})
            except ValidationError:
                self.missing.append(f"{stage}/{MANIFEST} figures (unreadable)")
                self._cache[key] = model()
        return self._cache[key]

    def jsonl(self, stage: str, relpath: str) -> list[dict]:
        """The JSON objects of a log, skipping (and counting) lines that are not objects."""
        key = (stage, relpath)
        if key in self._cache:
            return self._cache[key]
        rows: list[dict] = []
        folder = self.dirs.get(stage)
        path = folder / relpath if folder else None
        if path is None or not path.is_file():
            if folder is not None:
                self.missing.append(f"{stage}/{relpath}")
        else:
            with open(path, "rb") as f:
                for raw in f:
                    if not raw.strip():
                        continue
                    try:
                        row = json.loads(raw.decode("utf-8"))
                    except UnicodeDecodeError:
                        self.skipped[f"{stage}/{relpath}: invalid UTF-8"] += 1
                        continue
                    except json.JSONDecodeError:
                        self.skipped[f"{stage}/{relpath}: malformed JSON"] += 1
                        continue
                    if isinstance(row, dict):
                        rows.append(row)
                    else:
                        self.skipped[f"{stage}/{relpath}: not an object"] += 1
        self._cache[key] = rows
        return rows

    def files(self, stage: str, pattern: str) -> list[Path]:
        folder = self.dirs.get(stage)
        return sorted(folder.glob(pattern)) if folder else []
