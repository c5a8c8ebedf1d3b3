"""The `corpus:` section of a recipe."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from fournil.schema import Section


class LangIDConfig(Section):
    backend: Literal["py3langid", "fasttext"] = "py3langid"
    model_path: str | None = Field(None, description="fastText model file (GlotLID, lid.176) when backend is fasttext")
    min_score: float = Field(0.8, ge=0, le=1, description="py3langid: documents whose language score (probability among the recipe's languages) is below this are dropped; the fasttext backend uses each language's `language_score` setting instead")
    route_paragraphs: bool = Field(True, description="move paragraphs in another recipe language to that language")
    route_min_score: float = Field(0.5, ge=0, le=1, description="a paragraph moves to another language only with at least this score (0.5: on the shared corpus, no paragraph a second identifier calls French or Portuguese is moved, and English left drops under 1%)")
    unidentified_below: float = Field(0.3, ge=0, le=1, description="a paragraph whose probability of its document's language is below this, and that no other language claims, is removed (code, command output, lists of names); 0 keeps them (0.3: on the shared corpus, English-looking text left in de/fr halves, 1 in 3,000 German paragraphs lost)")
    min_paragraph_chars: int = Field(40, ge=1, description="shorter paragraphs (titles, commands) stay with their document and are not identified")
    max_paragraph_chars: int = Field(300, ge=64, description="only the first characters of a long paragraph are read by the identifier (speed; 300 characters identify a paragraph as well as the whole)")


class DedupConfig(Section):
    exact: bool = True
    minhash: bool = True
    ngram: int = Field(5, ge=1, description="shingle size in words (in characters for languages whose settings say `words: chars`)")
    buckets: int = Field(14, ge=1, description="LSH bands")
    hashes_per_bucket: int = Field(8, ge=1, description="rows per LSH band (14 x 8 flags pairs above ~0.75 Jaccard similarity)")


class CorpusConfig(Section):
    heldout_fraction: float = Field(0.05, ge=0, lt=0.5, description="share of document ids held out, in every language at once")
    langid: LangIDConfig = LangIDConfig()
    quality: bool = Field(True, description="apply the per-language Gopher/FineWeb quality filters")
    settings_dir: str | None = Field(None, description="folder of <lang>.yaml files overriding the shipped per-language filter settings")
    dedup: DedupConfig = DedupConfig()
    pii: bool = True
    harmful_words: dict[str, str] = Field(default_factory=dict, description="language → harmful-word list: a file (one word or phrase a line, # comments, a '# license:' line recorded) or ldnoobw (LDNOOBW's list for that language, CC-BY-4.0, from pip install 'fournil[harmful]'); documents whose words are more than harmful_max_share listed terms are dropped; off when empty")
    harmful_max_share: float = Field(0.01, ge=0, le=1, description="share of a document's words that may be listed harmful terms before it is dropped")
    decontaminate: list[str] = Field(default_factory=list, description="evaluation sets (JSONL/TSV) whose 13-grams must not appear in training")
    decontaminate_ngram: int = Field(13, ge=3, description="word n-gram length shared with an evaluation set that drops a document")
    workers: int = Field(0, ge=0, description="processes; 0 means one per core (the same bytes whatever the number)")
    tasks: int = Field(0, ge=0, description="shards of the first pass (files are spread over them); 0 means one per file, up to 64 or one per 256 MiB of input, whichever is more (from the input alone, not the cores)")
    shard_documents: int = Field(50_000, ge=1, description="documents per output .jsonl.zst shard")
    examples_per_reason: int = Field(3, ge=0, description="dropped examples kept per step and reason in stats.json")
    executor: Literal["local", "slurm", "ray"] = Field("local", description="datatrove executor that runs the shards")
    executor_options: dict[str, Any] = Field(default_factory=dict, description="extra arguments for the Slurm/Ray executor (e.g. partition, time, cpus_per_task)")
