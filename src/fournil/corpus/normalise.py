"""Normalisation that never changes meaning: mojibake repair, Unicode NFC, control characters, whitespace.

Case, accents, digits, curly quotes, ligatures and full-width forms are kept. ftfy (slow) only
runs on text showing a mojibake pattern: a Latin-1 lead character followed by what a UTF-8
continuation byte looks like once decoded as cp1252 ("Ã©", "â€™").
Each rewrite runs only on text that needs it: one C pass (`_kernels.tidy_flags`) finds the mojibake
hint and control characters, a substring test the rest, several times faster than a substitution
that finds nothing, and most text is already tidy.
"""

from __future__ import annotations

import re
import unicodedata

import ftfy

from fournil.corpus import _kernels

FTFY = ftfy.TextFixerConfig(uncurl_quotes=False, fix_latin_ligatures=False, fix_character_width=False,
                            normalization="NFC", explain=False)
CONTROL = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufeff]")
TRAILING_SPACE = re.compile(r"[ \t]+\n")
BLANK_LINES = re.compile(r"\n{3,}")
MOJIBAKE_HINT, CONTROL_CHARACTER = 1, 2  # _kernels.tidy_flags: a hint seen; one of CONTROL's characters seen (ESC is one)


def normalise_text(text: str) -> str:
    """The text repaired and tidied; an empty string when nothing is left."""
    flags = _kernels.tidy_flags(text)
    if flags & MOJIBAKE_HINT:
        text = ftfy.fix_text(text, FTFY)
        flags = _kernels.tidy_flags(text)
    if "\r" in text:  # no control character comes or goes
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if flags & CONTROL_CHARACTER:
        text = CONTROL.sub("", text)
    if not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    if " \n" in text or "\t\n" in text:
        text = TRAILING_SPACE.sub("\n", text)
    if "\n\n\n" in text:
        text = BLANK_LINES.sub("\n\n", text)
    return text.strip()
