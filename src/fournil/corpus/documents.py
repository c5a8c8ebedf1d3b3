"""Documents on disk: JSONL shards compressed with zstd, one document a line.

Fields: id, text, lang, source, category, license, plus free metadata. Every later stage reads the
curated corpus through `iter_documents`, never by globbing the folder itself, so the layout
(`<split>/<lang>/<source>/*.jsonl.zst`) can change in one place.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import zstandard

from fournil.atomic import replacing
from fournil.compressed import STREAM_ERRORS, byte_lines
from fournil.errors import FournilError

SPLITS = ("train", "heldout")


def write_documents(path: Path, documents: Iterable[dict]) -> int:
    """Write documents to one .jsonl.zst file (atomically); return how many were written."""
    count = 0
    with replacing(path) as tmp, open(tmp, "wb") as raw, zstandard.ZstdCompressor(level=3).stream_writer(raw) as zf:
        for doc in documents:
            zf.write((json.dumps(doc, ensure_ascii=False) + "\n").encode("utf-8"))
            count += 1
    return count


def read_documents(path: Path) -> Iterator[dict]:
    """Documents of one .jsonl.zst (or plain .jsonl) file written by fournil."""
    try:
        for line in byte_lines(path):
            if line.strip():
                yield json.loads(line)
    except (*STREAM_ERRORS, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise FournilError(f"{path} is corrupt ({error}); delete the corpus folder and run `fournil corpus` again") from None


def document_files(corpus_dir: Path, split: str = "train", lang: str | None = None, source: str | None = None) -> list[Path]:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}")
    pattern = f"{split}/{lang or '*'}/{source or '*'}/*.jsonl.zst"
    return sorted(corpus_dir.glob(pattern))


def iter_documents(corpus_dir: Path, split: str = "train", lang: str | None = None, source: str | None = None) -> Iterator[dict]:
    """Curated documents of a corpus stage folder, in a fixed order."""
    for path in document_files(corpus_dir, split, lang, source):
        yield from read_documents(path)
