"""Encoding text into token arrays, in batches the tokenizer spreads over every core (Rust threads),
and the encoding task that datatrove's executors run: one task per corpus file or parallel direction.

Task `rank` encodes its input into a part shard `<work>/parts/<rank>.{bin,idx,json}` (the header
also counts what was skipped, and the UTF-8 bytes read); the stage then joins each group's parts in
task order, so a shard does not depend on how many tasks, workers or which executor made it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np
from datatrove.pipeline.base import PipelineStep
from tokenizers import Tokenizer

from fournil.atomic import write_text
from fournil.corpus.documents import read_documents
from fournil.mixture.shards import write_shard
from fournil.parallel import read_pairs


def document_texts(documents: Iterable[dict], skipped: Counter) -> Iterator[str]:
    """The text of each usable document; others are counted in `skipped` by reason."""
    for doc in documents:
        text = doc.get("text") if isinstance(doc, dict) else None
        if not isinstance(text, str):
            skipped["no text field"] += 1
        elif not text.strip():
            skipped["empty text"] += 1
        else:
            yield text


def encode_texts(tokenizer: Tokenizer, texts: Iterable[str], eos: int, batch: int, counter: Counter) -> Iterator[np.ndarray]:
    """Token ids of each text followed by EOS; adds the texts' UTF-8 bytes to counter["bytes"]."""
    pending: list[str] = []

    def flush() -> Iterator[np.ndarray]:
        for encoding in tokenizer.encode_batch_fast(pending, add_special_tokens=False):
            ids = np.empty(len(encoding.ids) + 1, dtype=np.int64)
            ids[:-1] = encoding.ids
            ids[-1] = eos
            yield ids
        counter["bytes"] += sum(len(t.encode("utf-8")) for t in pending)
        pending.clear()

    for text in texts:
        pending.append(text)
        if len(pending) >= batch:
            yield from flush()
    if pending:
        yield from flush()


@lru_cache(maxsize=2)
def _tokenizer(directory: str, sha256: str) -> Tokenizer:
    """Loaded once per worker process (and tokenizer file: `sha256` keys the cache)."""
    from fournil.tokenizer import load

    return load(directory)


def task_texts(task: dict, skipped: Counter) -> Iterator[str]:
    """The texts of one task: a corpus file's documents, or one direction of a parallel file's pairs."""
    if "documents" in task:
        yield from document_texts(read_documents(Path(task["documents"])), skipped)
        return
    pairs, bad = read_pairs(Path(task["pairs"]), *task["langs"])
    skipped.update(bad)
    for x, y in pairs:
        src, tgt = (y, x) if task["flip"] else (x, y)
        yield task["template"].format(src_lang=task["names"][0], tgt_lang=task["names"][1], src=src, tgt=tgt)


class EncodeShards(PipelineStep):
    """One encoding task: its input into a part shard, with what was skipped and the bytes read."""

    name = "fournil encode"
    type = "fournil"

    def __init__(self, plan: dict):
        super().__init__()
        self.plan = plan

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        plan, task = self.plan, self.plan["tasks"][rank]
        skipped, counter = Counter(), Counter()
        tokens = encode_texts(_tokenizer(plan["tokenizer"], plan["tokenizer_sha256"]), task_texts(task, skipped), plan["eos"], plan["batch"], counter)
        stem = Path(plan["work"]) / "parts" / f"{rank:05d}"
        header = write_shard(stem, tokens, {"dtype": plan["dtype"], "group": task["group"]})
        write_text(stem.with_suffix(".json"), json.dumps({**header, "skipped": dict(sorted(skipped.items())), "bytes": counter["bytes"]}))
        return
        yield  # a generator, as datatrove expects
