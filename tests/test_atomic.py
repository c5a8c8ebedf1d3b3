"""fournil.atomic: the one way a stage puts a file in place, whole or not at all."""

from __future__ import annotations

import errno
import re
from pathlib import Path

import pytest

from fournil.atomic import replacing, write_text

SRC = Path(__file__).resolve().parents[1] / "src" / "fournil"


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "made" / "figures.json"
    write_text(path, "old")
    with pytest.raises(OSError, match="No space left"), replacing(path) as tmp:
        tmp.write_text("half of the new")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert path.read_text() == "old" and [p.name for p in path.parent.iterdir()] == ["figures.json"]
    with replacing(path) as tmp:
        tmp.write_bytes(b"new")
    assert path.read_text() == "new" and [p.name for p in path.parent.iterdir()] == ["figures.json"]


def test_no_module_but_fournil_atomic_renames_a_file_into_place():
    """One helper instead of eight: a temporary file renamed over its target anywhere else is a copy of it
    (whole folders renamed at once, checkpoints and a sweep's shared stages, are the exceptions)."""
    renames = re.compile(r"os\.replace\(|os\.rename\(|\.replace\((tmp|path|target)|\.rename\(")
    found = [str(p.relative_to(SRC)) for p in sorted(SRC.rglob("*.py")) if p.name != "atomic.py"
             for line in p.read_text(encoding="utf-8").splitlines() if renames.search(line)]
    assert found == ["sweep/share.py", "train/checkpoint.py"]
