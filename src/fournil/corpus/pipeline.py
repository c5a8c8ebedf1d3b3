"""The two passes of curation as datatrove pipeline steps, run by a datatrove executor.

Pass 1 (one task per group of input files): read → normalise → language ID and paragraph
routing → quality → PII → decontamination → MinHash band keys, written per (language, source)
under `work/pass1/`.
Routing sends text from any input to any language, so deduplication waits for pass 1 to finish.
Pass 2 (one task per language): exact then MinHash dedup across that language's sources,
held-out split by document key, final shards. Pass 2 reads a language's documents in the order of
their keys ([file, rank in file], from the reader), merging the task files of pass 1, so the
first-read copy that dedup keeps, and the shards, do not depend on how many tasks or workers ran. Each task writes its ledger next to its output;
datatrove's completion markers let an interrupted run redo only unfinished tasks.
"""

from __future__ import annotations

import contextlib
import heapq
import json
from pathlib import Path
from typing import Any

import xxhash
import zstandard
from datatrove.pipeline.base import PipelineStep

from fournil.atomic import replacing, write_json
from fournil.corpus._kernels import word_count
from fournil.corpus.dedup import KEY_BYTES, MinHasher, UnionFind, choose, exact_key
from fournil.corpus.documents import ShardWriter, read_documents
from fournil.corpus.ledger import Ledger
from fournil.corpus.readers import SourceReader
from fournil.corpus.steps import Decontaminate, HarmfulFilter, LanguageID, Normalise, QualityFilter, ScrubPII, chain

OUTPUT_FIELDS = ("id", "text", "lang", "source", "category", "license")
BANDS = "minhash_bands"
INTERNAL_FIELDS = ("priority", "order", BANDS)  # pass 1 → pass 2 only: the source's priority, the document's order key, its LSH band keys


def is_heldout(doc_id: str, seed: int, fraction: float) -> bool:
    """Held out by document key, so every language's copy of a document lands on the same side."""
    key = doc_id.split("#")[0]
    return xxhash.xxh3_64_intdigest(f"{seed}/{key}".encode("utf-8", "surrogatepass")) < fraction * 2**64


class Hashers:
    """Each language's MinHash of the recipe's dedup settings. Pass 1 computes the band keys, in as many
    tasks as there are file groups, so pass 2, one task per language, only looks them up."""

    def __init__(self, plan: dict):
        self.plan, self._of = plan, {}

    def band_keys(self, lang: str, text: str) -> str:
        """The document's band keys end to end, in hex (one short string to write and to read back)."""
        if lang not in self._of:
            dedup = self.plan["dedup"]
            self._of[lang] = MinHasher(dedup["ngram"], dedup["buckets"], dedup["hashes_per_bucket"], self.plan["by_chars"][lang],
                                       self.plan["seed"])
        hasher = self._of[lang]
        return b"".join(hasher.band_keys(hasher.signature(text))).hex()


class _Writers:
    """One open zstd JSONL file per (language, source), each renamed into place when `files` closes
    without error (in reverse: each stream, then its file, then the rename), else removed."""

    def __init__(self, root: Path, rank: int, files: contextlib.ExitStack):
        self.root, self.rank, self.files = root, rank, files
        self.open: dict[tuple[str, str], Any] = {}

    def write(self, record: dict) -> None:
        key = (record["lang"], record["source"])
        if key not in self.open:
            tmp = self.files.enter_context(replacing(self.root / key[0] / key[1] / f"{self.rank:05d}.jsonl.zst"))
            raw = self.files.enter_context(open(tmp, "wb"))
            self.open[key] = self.files.enter_context(zstandard.ZstdCompressor(level=1).stream_writer(raw))
        self.open[key].write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))


class CurateFiles(PipelineStep):
    """Pass 1 for one task: its files through the per-document steps, into per-language files."""

    name = "fournil curate files"
    type = "fournil"

    def __init__(self, plan: dict):
        super().__init__()
        self.plan = plan

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        plan = self.plan
        ledger = Ledger(plan["examples"])
        steps = [Normalise(ledger), LanguageID(plan["languages"], plan["langid"], plan["thresholds"], ledger)]
        if plan["quality"]:
            steps.append(QualityFilter(plan["settings_dir"], ledger))
        if plan["harmful_words"]:
            steps.append(HarmfulFilter(plan["harmful_words"], plan["harmful_max_share"], ledger))
        if plan["pii"]:
            steps.append(ScrubPII(ledger))
        if plan["decontaminate"]:
            steps.append(Decontaminate(plan["decontaminate"], plan["decontaminate_ngram"], ledger))
        work = Path(plan["work"])

        def documents():
            for item in plan["tasks"][rank]:
                yield from SourceReader(item["source"], Path(item["root"]), ledger).read(Path(item["path"]), item["order"])

        hashers = Hashers(plan)
        with contextlib.ExitStack() as files:
            writers = _Writers(work / "pass1", rank, files)
            for doc in chain(documents(), steps):
                record = {"id": doc.id, "text": doc.text, **doc.metadata}
                if plan["dedup"]["minhash"]:
                    record[BANDS] = hashers.band_keys(record["lang"], doc.text)
                writers.write(record)
        write_json(work / "ledgers" / f"pass1-{rank:05d}.json", ledger.to_dict())
        return
        yield  # a generator, as datatrove expects


class DedupLanguage(PipelineStep):
    """Pass 2 for one language: exact and near dedup across sources, held-out split, final shards."""

    name = "fournil dedup language"
    type = "fournil"

    def __init__(self, plan: dict):
        super().__init__()
        self.plan = plan

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        plan = self.plan
        lang = plan["languages"][rank]
        work, out = Path(plan["work"]), Path(plan["out"])
        ledger = Ledger(plan["examples"])
        files = sorted((work / "pass1" / lang).glob("*/*.jsonl.zst"))
        dedup = plan["dedup"]

        def documents():  # in order-key order, whatever task wrote them: each file is sorted already
            return heapq.merge(*(read_documents(path) for path in files), key=lambda doc: doc.get("order") or [])

        # first read: exact keys, priorities and MinHash bands. Every document goes into the bands, exact
        # duplicates too: a copy has its winner's bands (the same lower-cased words), so the clusters of
        # the survivors are the same as without it, and the documents are read once less.
        exact: dict[int, int] = {}
        priorities, lengths, sources, copies = [], [], [], []
        dropped: set[int] = set()
        hashers = Hashers(plan)
        clusters = UnionFind()
        bands: list[dict[bytes, int]] = [{} for _ in range(dedup["buckets"])]
        for i, doc in enumerate(documents()):
            priorities.append(doc.get("priority", 0))
            lengths.append(len(doc["text"]))
            sources.append(doc["source"])
            copies.append(1)
            if dedup["minhash"]:
                clusters.add()  # element i
                keys = bytes.fromhex(doc.get(BANDS) or hashers.band_keys(lang, doc["text"]))  # or a pass-1 file of a fournil before pass 1 made them
                for b, band in enumerate(bands):
                    j = band.setdefault(keys[KEY_BYTES * b:KEY_BYTES * (b + 1)], i)
                    if j != i:
                        clusters.union(i, j)
            if not dedup["exact"]:
                continue
            ledger.read("dedup_exact", lang, doc["source"], len(doc["text"]))
            key = exact_key(doc["text"])
            j = exact.get(key)
            if j is None:
                exact[key] = i
                continue
            loser, winner = (j, i) if priorities[i] > priorities[j] else (i, j)
            exact[key] = winner
            copies[winner] += copies[loser]
            dropped.add(loser)
            ledger.drop("dedup_exact", lang, sources[loser], lengths[loser], "exact_duplicate",
                        doc["id"] if loser == i else "", doc["text"] if loser == i else "")
        for i in range(len(priorities)):
            if dedup["exact"] and i not in dropped:
                ledger.keep("dedup_exact", lang, sources[i], lengths[i])
        cluster_size = {i: copies[i] for i in range(len(priorities)) if i not in dropped}
        if dedup["minhash"]:
            survivors = [i for i in range(len(priorities)) if i not in dropped]
            best = choose(clusters, survivors, priorities)
            sizes: dict[int, int] = {}
            for i in survivors:
                root = clusters.find(i)
                sizes[root] = sizes.get(root, 0) + copies[i]
            cluster_size = {}
            for i in survivors:
                ledger.read("dedup_minhash", lang, sources[i], lengths[i])
                root = clusters.find(i)
                if best[root] == i:
                    cluster_size[i] = sizes[root]
                    ledger.keep("dedup_minhash", lang, sources[i], lengths[i])
                else:
                    ledger.drop("dedup_minhash", lang, sources[i], lengths[i], "near_duplicate")
        # second read: write the kept documents as they come, split by document key
        figures = {"documents": 0, "characters": 0, "words": 0, "heldout_documents": 0, "heldout_characters": 0}
        with contextlib.ExitStack() as writers:
            shards: dict[tuple[str, str], ShardWriter] = {}  # one open file per split and source
            for i, doc in enumerate(documents()):
                if i not in cluster_size:
                    continue
                record = {k: doc[k] for k in OUTPUT_FIELDS}
                record.update({k: v for k, v in doc.items() if k not in OUTPUT_FIELDS and k not in INTERNAL_FIELDS})
                record["minhash_cluster_size"] = cluster_size[i]
                split = "heldout" if is_heldout(doc["id"], plan["seed"], plan["heldout_fraction"]) else "train"
                if split == "heldout":
                    figures["heldout_documents"] += 1
                    figures["heldout_characters"] += len(doc["text"])
                else:
                    figures["documents"] += 1
                    figures["characters"] += len(doc["text"])
                    figures["words"] += word_count(doc["text"])
                key = (split, doc["source"])
                if key not in shards:
                    shards[key] = writers.enter_context(ShardWriter(out / split / lang / doc["source"], plan["shard_documents"]))
                shards[key].write(record)
        write_json(work / "ledgers" / f"pass2-{lang}.json", {"ledger": ledger.to_dict(), "figures": figures})
        return
        yield
