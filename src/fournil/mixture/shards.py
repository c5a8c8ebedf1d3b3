"""Token shards: one per (language, source), three files next to each other.

`<stem>.bin`  the tokens of every document, each followed by EOS, flat little-endian uint16
              (uint32 when the vocabulary exceeds 65,535);
`<stem>.idx`  uint64 cumulative document end offsets, in tokens (the last one = tokens);
`<stem>.json` the header: dtype, tokens, documents, tokenizer_sha256, lang, source, category,
              skipped (documents or pair rows not encoded, by reason).

The header is written last, so a shard without one is unfinished. Reading memory-maps the tokens:
the sampler never loads a shard into memory.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fournil.atomic import replacing, write_text
from fournil.errors import FournilError


def dtype_for(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= 65535 else np.dtype("<u4")


def write_shard(stem: Path, documents: Iterable[np.ndarray], header: dict) -> dict:
    """Write token arrays (EOS already appended) as a shard; return its completed header."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    dtype = np.dtype(header["dtype"])
    ends: list[int] = []
    total = 0
    with replacing(stem.with_suffix(".bin")) as bin_tmp, replacing(stem.with_suffix(".idx")) as idx_tmp:
        with open(bin_tmp, "wb") as out:
            for tokens in documents:
                out.write(np.ascontiguousarray(tokens, dtype=dtype).tobytes())
                total += len(tokens)
                ends.append(total)
        np.asarray(ends, dtype="<u8").tofile(idx_tmp)
    header = {**header, "tokens": total, "documents": len(ends)}
    write_text(stem.with_suffix(".json"), json.dumps(header, indent=2, ensure_ascii=False))  # last: a shard with a header is whole
    return header


def join_shards(stem: Path, parts: list[Path], header: dict) -> dict:
    """Write the part shards, in the order given, as one shard (header last); return its header."""
    total = documents = 0
    with replacing(stem.with_suffix(".bin")) as bin_tmp, replacing(stem.with_suffix(".idx")) as idx_tmp:
        with open(bin_tmp, "wb") as tokens, open(idx_tmp, "wb") as index:
            for part in parts:
                with open(part.with_suffix(".bin"), "rb") as f:
                    shutil.copyfileobj(f, tokens, 1 << 24)
                ends = np.fromfile(part.with_suffix(".idx"), dtype="<u8")
                index.write((ends + np.uint64(total)).astype("<u8").tobytes())
                total += int(ends[-1]) if len(ends) else 0
                documents += len(ends)
    header = {**header, "tokens": total, "documents": documents}
    write_text(stem.with_suffix(".json"), json.dumps(header, indent=2, ensure_ascii=False))
    return header


@dataclass
class Shard:
    header: dict
    tokens: np.ndarray  # memory-mapped
    ends: np.ndarray  # memory-mapped


def read_header(stem: Path) -> dict:
    path = stem.with_suffix(".json")
    try:
        header = json.loads(path.read_text())
        for key in ("dtype", "tokens", "documents", "tokenizer_sha256", "lang", "source", "category"):
            header[key]
    except FileNotFoundError:
        raise FournilError(f"shard {stem}: {path.name} is missing; run `fournil mixture RECIPE` again") from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        raise FournilError(f"shard {stem}: {path.name} is corrupt; delete the mixture folder and run `fournil mixture RECIPE` again") from None
    return header


def open_shard(stem: Path, tokenizer_sha256: str | None = None) -> Shard:
    """Memory-map a shard after checking that its files agree with its header."""
    header = read_header(stem)
    redo = "delete the mixture folder and run `fournil mixture RECIPE` again"
    if tokenizer_sha256 is not None and header["tokenizer_sha256"] != tokenizer_sha256:
        raise FournilError(f"shard {stem} was encoded with another tokenizer; {redo}")
    dtype = np.dtype(header["dtype"])
    bin_path, idx_path = stem.with_suffix(".bin"), stem.with_suffix(".idx")
    for path, expected in ((bin_path, header["tokens"] * dtype.itemsize), (idx_path, header["documents"] * 8)):
        if not path.is_file():
            raise FournilError(f"shard {stem}: {path.name} is missing; {redo}")
        if path.stat().st_size != expected:
            raise FournilError(f"shard {stem}: {path.name} has {path.stat().st_size} bytes, the header says {expected}; {redo}")
    if header["tokens"] == 0:
        return Shard(header, np.zeros(0, dtype), np.zeros(0, "<u8"))
    # plain ndarray views of the maps: slicing a np.memmap costs a Python-level __array_finalize__
    tokens = np.memmap(bin_path, dtype=dtype, mode="r").view(np.ndarray)
    ends = np.memmap(idx_path, dtype="<u8", mode="r").view(np.ndarray)
    if int(ends[-1]) != header["tokens"]:
        raise FournilError(f"shard {stem}: its index ends at {int(ends[-1])} tokens, the header says {header['tokens']}; {redo}")
    return Shard(header, tokens, ends)
