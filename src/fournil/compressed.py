"""Reading files that may be compressed (.zst, .gz, .bz2, .xz), so that a truncated file is noticed.

zstandard's stream reader returns a cut-off frame as if the file ended there; reading frame by frame
with a decompressobj tells the two apart. Callers catch STREAM_ERRORS and count the file as truncated.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import zlib
from collections.abc import Iterator
from pathlib import Path

import zstandard

COMPRESSED = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
STREAM_ERRORS = (zstandard.ZstdError, EOFError, OSError, zlib.error, lzma.LZMAError, ValueError)


def _open(path: Path):
    suffix = path.suffix.lower()
    if suffix in COMPRESSED:
        return COMPRESSED[suffix](path, "rb")
    return open(path, "rb")


READ_BYTES = 1 << 16  # compressed bytes decompressed at a time: a reader holds a few hundred kB, not MBs


def _zst_chunks(path: Path) -> Iterator[bytes]:
    """Decompressed blocks of a (multi-frame) .zst file; EOFError when the last frame is cut short.
    Corpus pass 2 merges one reader per pass-1 file, so a block is held that many times at once."""
    with open(path, "rb") as raw:
        stream, fed = zstandard.ZstdDecompressor().decompressobj(), False
        while chunk := raw.read(READ_BYTES):
            while chunk:
                fed = True
                yield stream.decompress(chunk)
                if stream.eof:
                    chunk = stream.unused_data
                    stream, fed = zstandard.ZstdDecompressor().decompressobj(), False
                else:
                    chunk = b""
        if fed:
            raise EOFError(f"{path}: truncated zstd frame")


def byte_lines(path: Path) -> Iterator[bytes]:
    """The lines of a file, newline included, decompressed by suffix."""
    if path.suffix.lower() != ".zst":
        with _open(path) as f:
            yield from f
        return
    rest = b""
    for block in _zst_chunks(path):
        lines = (rest + block).split(b"\n")
        rest = lines.pop()
        for line in lines:
            yield line + b"\n"
    if rest:
        yield rest


def read_all(path: Path) -> bytes:
    """The whole file, decompressed by suffix."""
    if path.suffix.lower() == ".zst":
        return b"".join(_zst_chunks(path))
    with _open(path) as f:
        return f.read()
