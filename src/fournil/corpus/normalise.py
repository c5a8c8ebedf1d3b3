"""Normalisation that never changes meaning: mojibake repair, Unicode NFC, control characters, whitespace.

Case, accents, digits, curly quotes, ligatures and full-width forms are kept. ftfy (slow) only
runs on text showing a mojibake pattern: a Latin-1 lead character followed by what a UTF-8
continuation byte looks like once decoded as cp1252 ("Ã©", "â€™").
Each rewrite runs only on text that needs it: a character-class search or a substring test is
several times faster than a substitution that finds nothing, and most text is already tidy.
"""

from __future__ import annotations

import re
import unicodedata

import ftfy

FTFY = ftfy.TextFixerConfig(uncurl_quotes=False, fix_latin_ligatures=False, fix_character_width=False,
                            normalization="NFC", explain=False)
MOJIBAKE_HINT = re.compile("[\u00c2-\u00f4][\u0080-\u00bf\u2018-\u203a\u20ac\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc\u2122]")
CONTROL = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufeff]")
TRAILING_SPACE = re.compile(r"[ \t]+\n")
BLANK_LINES = re.compile(r"\n{3,}")
CONTROL_CHARACTER = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufeff]")  # CONTROL matches iff one is there (ESC is one)


def normalise_text(text: str) -> str:
    """The text repaired and tidied; an empty string when nothing is left."""
    if MOJIBAKE_HINT.search(text):
        text = ftfy.fix_text(text, FTFY)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if CONTROL_CHARACTER.search(text):
        text = CONTROL.sub("", text)
    if not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    if " \n" in text or "\t\n" in text:
        text = TRAILING_SPACE.sub("\n", text)
    if "\n\n\n" in text:
        text = BLANK_LINES.sub("\n\n", text)
    return text.strip()
