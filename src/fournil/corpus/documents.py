"""Documents on disk: JSONL shards compressed with zstd, one document a line.

Fields: id, text, lang, source, category, license, plus free metadata. Every later stage reads the
curated corpus through `iter_documents`, never by globbing the folder itself, so the layout
(`<split>/<lang>/<source>/*.jsonl.zst`) can change in one place.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import zstandard

from fournil.atomic import replacing
from fournil.compressed import STREAM_ERRORS, byte_lines
from fournil.errors import FournilError

SPLITS = ("train", "heldout")
LEVEL = 3  # zstd level of the curated shards


def _line(doc: dict) -> bytes:
    return (json.dumps(doc, ensure_ascii=False) + "\n").encode("utf-8")


def write_documents(path: Path, documents: Iterable[dict]) -> int:
    """Write documents to one .jsonl.zst file (atomically); return how many were written."""
    count = 0
    with replacing(path) as tmp, open(tmp, "wb") as raw, zstandard.ZstdCompressor(level=LEVEL).stream_writer(raw) as zf:
        for doc in documents:
            zf.write(_line(doc))
            count += 1
    return count


class ShardWriter:
    """Documents written as they come into `<folder>/<n:05d>.jsonl.zst` shards of `size` documents,
    each the bytes `write_documents` gives it: the writer holds one open file, never a shard's worth
    of documents, so memory does not grow with the input. A shard is renamed into place when full
    and when the writer closes without error; on an error the unfinished one is removed."""

    def __init__(self, folder: Path, size: int):
        self.folder, self.size = folder, size
        self.shards = self.count = 0
        self._shard: contextlib.ExitStack | None = None  # the unfinished shard's file, compressor and rename
        self._stream = None

    def __enter__(self) -> ShardWriter:
        return self

    def write(self, doc: dict) -> None:
        if self._shard is None:
            self._shard = contextlib.ExitStack()
            tmp = self._shard.enter_context(replacing(self.folder / f"{self.shards:05d}.jsonl.zst"))
            raw = self._shard.enter_context(open(tmp, "wb"))
            self._stream = self._shard.enter_context(zstandard.ZstdCompressor(level=LEVEL).stream_writer(raw))
        self._stream.write(_line(doc))
        self.count += 1
        if self.count == self.size:
            self.__exit__(None, None, None)

    def __exit__(self, kind, error, traceback) -> None:
        if self._shard is not None:
            shard, self._shard, self._stream = self._shard, None, None
            if kind is None:
                self.count, self.shards = 0, self.shards + 1
            shard.__exit__(kind, error, traceback)


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
