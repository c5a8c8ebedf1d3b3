"""Sharing a finished stage between points: the folder is rebuilt in the other point's run folder
from hard links to the same files (a copy where the disk cannot link).

Each point keeps a real run folder, so every stage, manifest and check works there as in any run:
a shared stage is a skipped one, its outputs checked against its manifest's hashes on read. A file
two points hold is never written in place: before a point resumes a stage whose folder holds shared
files (a train stage given more steps, a mixture given other shares), those files become its own
copies, except the stage's `kept` work, which a resumed stage only reads (the mixture's shards).
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
from pathlib import Path

from fournil.atomic import replacing
from fournil.runs import MANIFEST


def finished_as(stage_dir: Path) -> str | None:
    """The fingerprint of a finished stage folder, or None."""
    try:
        return json.loads((stage_dir / MANIFEST).read_text()).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return None


def link_stage(source: Path, target: Path) -> str:
    """Put a finished stage folder at `target`, replacing what was there; returns how ("linked" or "copied")."""
    staging = target.parent / f".{target.name}.sharing"
    shutil.rmtree(staging, ignore_errors=True)
    how = "linked"
    for path in sorted(source.rglob("*")):
        copy = staging / path.relative_to(source)
        if path.is_dir():
            copy.mkdir(parents=True, exist_ok=True)
            continue
        copy.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, copy)
        except OSError:  # another file system, or one without hard links
            shutil.copy2(path, copy)
            how = "copied"
    staging.mkdir(parents=True, exist_ok=True)
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)
    return how


def own_copies(stage_dir: Path, keep: str = "") -> int:
    """Replace every file under `stage_dir` that another folder also links by a copy of its own, except
    those matching the glob `keep`; returns how many."""
    count = 0
    for path in sorted(stage_dir.rglob("*")):
        if keep and fnmatch.fnmatchcase(str(path.relative_to(stage_dir)), keep):
            continue
        if path.is_file() and not path.is_symlink() and path.stat().st_nlink > 1:
            with replacing(path) as copy:
                shutil.copy2(path, copy)
            count += 1
    return count
