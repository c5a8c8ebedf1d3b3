"""Readers: raw files of a source → documents, with every unreadable record counted by reason.

Formats: plain text (a file is a document), code (a file of a source tree is a document, tagged
with its programming language), JSONL (plain, .gz, .zst, .bz2, .xz; the text field is
chosen per source), Parquet, and HTML (main text extracted with trafilatura). Nothing here raises
on bad data: invalid lines, invalid UTF-8, truncated compressed files, empty files and binary
files are dropped with their reason so the funnel stays complete. In JSONL the unit is the line: a
NUL byte or bad JSON costs that line, never the rest of the file.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from datatrove.data import Document

from fournil.compressed import COMPRESSED, STREAM_ERRORS, byte_lines, read_all
from fournil.corpus.ledger import Ledger
from fournil.errors import FournilError

STEP = "read"
JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
HTML_SUFFIXES = (".html", ".htm", ".xhtml")
META_FIELDS = ("id", "lang", "source", "category", "license")
PROGRAMMING_LANGUAGES = {".py": "python", ".c": "c", ".h": "c", ".cc": "c++", ".cpp": "c++", ".hpp": "c++", ".rs": "rust",
                         ".go": "go", ".java": "java", ".js": "javascript", ".ts": "typescript", ".rb": "ruby",
                         ".sh": "shell", ".pl": "perl", ".lua": "lua", ".sql": "sql", ".r": "r", ".jl": "julia"}


def file_format(path: Path, declared: str = "auto") -> str:
    if declared != "auto":
        return declared
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".zst", *COMPRESSED):
        suffixes = suffixes[:-1]
    last = suffixes[-1] if suffixes else ""
    if last in JSONL_SUFFIXES:
        return "jsonl"
    if last == ".parquet":
        return "parquet"
    if last in HTML_SUFFIXES:
        return "html"
    return "text"


OPTIONAL_PACKAGES = {"parquet": (("pyarrow",), "parquet"), "html": (("trafilatura", "lxml_html_clean"), "html")}  # format → (modules, extra)


def check_readers(sources: list[tuple[str, list[Path], str]]) -> None:
    """Fail before any work when a source's format needs a package that is not installed.

    `sources` holds (name, files, declared format) triples."""
    for name, files, declared in sources:
        for kind in sorted({file_format(path, declared) for path in files} & OPTIONAL_PACKAGES.keys()):
            modules, extra = OPTIONAL_PACKAGES[kind]
            missing = [module for module in modules if importlib.util.find_spec(module) is None]
            if missing:
                raise FournilError(f"source {name}: reading {kind} files needs {' and '.join(missing)}; run `pip install 'fournil[{extra}]'`")


class SourceReader:
    """Reads the files of one source into datatrove Documents carrying the source's tags."""

    def __init__(self, source: dict[str, Any], root: Path, ledger: Ledger):
        self.source = source
        self.root = root
        self.ledger = ledger
        self.meta = {"lang": source["lang"], "source": source["name"], "category": source["category"],
                     "license": source["license"], "priority": source["priority"]}

    def _drop(self, reason: str, chars: int, where: str, text: str = "") -> None:
        lang, name = self.source["lang"], self.source["name"]
        self.ledger.read(STEP, lang, name, chars)
        self.ledger.drop(STEP, lang, name, chars, reason, where, text)

    def _document(self, text: str, doc_id: str, extra: dict | None = None) -> Document | None:
        lang, name = self.source["lang"], self.source["name"]
        if not text.strip():
            self._drop("empty_text", len(text), doc_id)
            return None
        self.ledger.read(STEP, lang, name, len(text))
        self.ledger.keep(STEP, lang, name, len(text))
        return Document(text=text, id=doc_id, metadata={**(extra or {}), **self.meta})

    def _name(self, path: Path) -> str:
        try:
            relative = path.relative_to(self.root)
        except ValueError:
            relative = Path(path.name)
        return f"{self.source['name']}/{relative.as_posix()}"

    def read(self, path: Path, order: int = 0) -> Iterator[Document]:
        """The documents of one file; each carries `order` = [order, its rank in the file], the key that
        puts every document of a corpus in one sequence, however the files were spread over tasks."""
        for rank, doc in enumerate(self._read(path)):
            doc.metadata["order"] = [order, rank]
            yield doc

    def _read(self, path: Path) -> Iterator[Document]:
        kind = file_format(path, self.source["format"])
        name = self._name(path)
        try:
            if path.stat().st_size == 0:
                self._drop("empty_file", 0, name)
                return
        except OSError:
            self._drop("unreadable_file", 0, name)
            return
        yield from getattr(self, f"_read_{kind}")(path, name)

    def _read_text(self, path: Path, name: str) -> Iterator[Document]:
        try:
            raw = read_all(path)
        except STREAM_ERRORS:
            self._drop("truncated_file", 0, name)
            return
        if not raw:
            self._drop("empty_file", 0, name)
            return
        if b"\x00" in raw[:8192]:
            self._drop("binary_file", len(raw), name)
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            self._drop("invalid_utf8", len(raw), name)
            return
        if doc := self._document(text, name):
            yield doc

    def _read_code(self, path: Path, name: str) -> Iterator[Document]:
        """A source file: one document, tagged with its programming language (by extension)."""
        suffix = path.suffix.lower()
        for doc in self._read_text(path, name):
            doc.metadata["programming_language"] = PROGRAMMING_LANGUAGES.get(suffix, suffix.lstrip(".") or "unknown")
            yield doc

    def _read_jsonl(self, path: Path, name: str) -> Iterator[Document]:
        field = self.source["text_field"]
        lines = 0
        try:
            for lineno, raw in enumerate(byte_lines(path), 1):
                if not raw.strip():
                    continue
                lines += 1
                where = f"{name}:{lineno}"
                if b"\x00" in raw:  # a damaged line (or a binary file, line by line): it costs that line only
                    self._drop("nul_byte", len(raw), where)
                    continue
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    self._drop("invalid_utf8", len(raw), where)
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    self._drop("invalid_json", len(line), where, line)
                    continue
                if not isinstance(record, dict):
                    self._drop("invalid_json", len(line), where, line)
                    continue
                text = record.get(field)
                if not isinstance(text, str):
                    self._drop("missing_text_field", len(line), where, line)
                    continue
                doc_id = record.get("id")
                doc_id = str(doc_id) if isinstance(doc_id, str | int) and str(doc_id) else where
                extra = {k: v for k, v in record.items()
                         if k != field and k not in META_FIELDS and isinstance(v, str | int | float | bool)}
                if doc := self._document(text, doc_id, extra):
                    yield doc
        except STREAM_ERRORS:
            self._drop("truncated_file", 0, name)
            return
        if lines == 0:
            self._drop("empty_file", 0, name)

    def _read_parquet(self, path: Path, name: str) -> Iterator[Document]:
        import pyarrow.parquet as pq
        field = self.source["text_field"]
        try:
            table = pq.ParquetFile(path)
            if field not in table.schema_arrow.names:
                self._drop("missing_text_field", 0, name)
                return
            row = 0
            for batch in table.iter_batches(batch_size=1024):
                columns = batch.to_pydict()
                ids = columns.get("id")
                for i, text in enumerate(columns[field]):
                    row += 1
                    where = f"{name}:{row}"
                    if not isinstance(text, str):
                        self._drop("missing_text_field", 0, where)
                        continue
                    doc_id = str(ids[i]) if ids and ids[i] is not None else where
                    if doc := self._document(text, doc_id):
                        yield doc
        except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
            self._drop("corrupt_file", 0, name, str(error))

    def _read_html(self, path: Path, name: str) -> Iterator[Document]:
        import trafilatura

        try:
            raw = read_all(path)
        except STREAM_ERRORS:
            self._drop("truncated_file", 0, name)
            return
        if b"\x00" in raw[:8192]:
            self._drop("binary_file", len(raw), name)
            return
        text = trafilatura.extract(raw, include_comments=False, include_tables=True, favor_precision=True)
        if not text:
            self._drop("no_main_text", len(raw), name)
            return
        if doc := self._document(text, name):
            yield doc
