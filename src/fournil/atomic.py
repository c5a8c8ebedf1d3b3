"""Files written whole or not at all, for every stage.

A file is written under a temporary name beside its place (`.NAME.tmp`), synced to disk and renamed
over it, so a crash, kill -9 or full disk leaves the old file or none, never half of one: whatever a
reader or a resumed stage finds under a real name is whole. The temporary name is fixed, so a run
killed mid-write leaves at most one leftover per file, which the next write of that file replaces.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any


def _umask() -> int:
    """The process umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yield the temporary path to write; when the block ends without error it becomes `path`, else it is removed.

    The file gets the mode a plain open() gives (0666 less the umask) whatever wrote it: safetensors
    creates its files 0600, which would keep a released model from the other users of a machine."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):  # on a read-only disk the removal fails too; the first error is the one to tell
            tmp.unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    """`path.write_text(text)` (UTF-8), atomically."""
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path, data: Any, indent: int | None = None) -> None:
    """`data` as UTF-8 JSON (non-ASCII kept as is), atomically."""
    write_text(path, json.dumps(data, indent=indent, ensure_ascii=False))
