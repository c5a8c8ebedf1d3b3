"""Harmful-content filtering by word lists, one per language: the lists are the user's (or a package's).

No list ships with fournil: what counts as harmful differs by language, community and use, so a
recipe names a file per language (`corpus.harmful_words: {fr: lists/fr.txt}`); a language without
one is not filtered, and with no list at all the step does not run. A document is dropped when the
listed terms make up more than `corpus.harmful_max_share` of its words (one slur in a long manual
stays; a page made of them goes). Terms match whole words, case-folded; a line may be a phrase.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import regex

from fournil.errors import FournilError

WORD = regex.compile(r"\w+")


def read_word_list(path: Path) -> list[str]:
    """The terms of a list: one a line, blank lines and `#` comments skipped, case-folded, sorted."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise FournilError(f"corpus.harmful_words: no word list {path}; give a file with one word or phrase a line") from None
    except UnicodeDecodeError:
        raise FournilError(f"corpus.harmful_words: {path} is not UTF-8 text") from None
    terms = sorted({line.strip().casefold() for line in lines if line.strip() and not line.lstrip().startswith("#")})
    if not terms:
        raise FournilError(f"corpus.harmful_words: {path} lists no terms")
    return terms


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
