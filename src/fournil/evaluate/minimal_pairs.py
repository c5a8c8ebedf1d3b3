"""Grammar minimal pairs: a correct sentence and one made wrong by a rule written for its language.

Each rule finds the first place in a sentence where it applies and returns one `Edit` (a span of the
sentence and its replacement), so the wrong sentence differs from the right one in that span only.
The rules are chosen so the result is ungrammatical or misspelt whatever the rest of the sentence:

- elision (fr, it): an elided article or particle written out in full (`l'outil` → `le outil`,
  `dell'utente` → `dello utente`);
- contraction (fr, es, it, pt): a preposition–article contraction taken apart (`du` → `de le`,
  `del` → `de el`, `nel` → `in il`, `do` → `de o`);
- gender (de, es, fr, it, pt): an article given the other gender before the same noun (`une` ↔ `un`,
  `die` ↔ `das`, `el` → `la`, `il` → `la`, `um` ↔ `uma`), with guards against pronoun uses;
- number (all): in en, fr and de a verb given the other number (`is` ↔ `are`, `est` ↔ `sont`,
  `ist` ↔ `sind`); in es, it and pt, whose subjects may be left out (so `puede` → `pueden` can stay
  grammatical), a plural article made singular before its plural noun (`los archivos` → `el archivos`,
  `i livelli` → `il livelli`, `os arquivos` → `o arquivos`);
- article (en): `a` ↔ `an` before the same word;
- noun_case (de): the noun after an article written in lower case;
- accent (de, es, fr, it, pt): one accented letter of a word of four letters or more written without
  its accent, only when the unaccented word is not itself a word of the language (`known`, the
  words of the training text: `où` → `ou` is never made);
- word_order (all): an article and the word after it swapped (`the file` → `file the`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Edit:
    rule: str
    start: int
    end: int
    new: str

    def apply(self, sentence: str) -> str:
        return sentence[:self.start] + self.new + sentence[self.end:]


def _case_like(model: str, word: str) -> str:
    return word[:1].upper() + word[1:] if model[:1].isupper() else word


def _words(sentence: str) -> list[re.Match]:
    return list(WORD.finditer(sentence))


def _joined(sentence: str, a: re.Match, b: re.Match) -> bool:
    """Two words separated by exactly one space (no punctuation, no apostrophe between them)."""
    return sentence[a.end():b.start()] == " "


Guard = Callable[[str, list[re.Match], int], bool]


def _swap(rule: str, table: dict[str, str], guard: Guard | None = None):
    """A rule replacing the first word found in `table` (whole word, any case) where `guard` allows it."""
    def apply(sentence: str, known: set[str]) -> Edit | None:
        words = _words(sentence)
        for i, m in enumerate(words):
            new = table.get(m.group().lower())
            if new is None or sentence[m.end():m.end() + 1] in ("'", "’", "-") or sentence[m.start() - 1:m.start()] in ("'", "’", "-"):
                continue
            if guard is None or guard(sentence, words, i):
                return Edit(rule, m.start(), m.end(), _case_like(m.group(), new))
        return None
    return apply


def _both_ways(pairs: dict[str, str]) -> dict[str, str]:
    return {**pairs, **{v: k for k, v in pairs.items()}}


def _next_word(allowed: Callable[[str], bool]) -> Guard:
    """The word after is joined by one space and passes `allowed`."""
    def guard(sentence: str, words: list[re.Match], i: int) -> bool:
        return i + 1 < len(words) and _joined(sentence, words[i], words[i + 1]) and allowed(words[i + 1].group())
    return guard


def _lower_word(skip: set[str] = frozenset()) -> Guard:
    return _next_word(lambda w: w[:1].islower() and w.isalpha() and w.lower() not in skip)


def _capital_word(sentence: str, words: list[re.Match], i: int) -> bool:
    """German: the next word is a capitalised noun (not an acronym, not the start of a new clause)."""
    return _next_word(lambda w: w[:1].isupper() and w[1:].islower() and w.isalpha())(sentence, words, i)


def _elision(rule: str, full: dict[str, str]):
    """Undo an elision: `l'X` → `le X`; `full` maps the elided form (before the apostrophe) to the full one."""
    pattern = re.compile(rf"(?<!\w)({'|'.join(sorted(full, key=len, reverse=True))})['’](?=\w)", re.IGNORECASE)

    def apply(sentence: str, known: set[str]) -> Edit | None:
        m = pattern.search(sentence)
        if m is None:
            return None
        return Edit(rule, m.start(), m.end(), _case_like(m.group(1), full[m.group(1).lower()]) + " ")
    return apply


def _accent(letters: str):
    """Drop the accent of the first accented letter of a word of 4+ letters whose unaccented form is not a known word."""
    plain = {c: unicodedata.normalize("NFD", c)[0] for c in letters}

    def apply(sentence: str, known: set[str]) -> Edit | None:
        for m in _words(sentence):
            word = m.group()
            if len(word) < 4 or not word.isalpha():
                continue
            for j, c in enumerate(word):
                base = plain.get(c.lower())
                if base is None:
                    continue
                base = base.upper() if c.isupper() else base
                wrong = word[:j] + base + word[j + 1:]
                if wrong.lower() not in known:
                    return Edit("accent", m.start() + j, m.start() + j + 1, base)
                break  # only a word's first accented letter is tried
        return None
    return apply


def _word_order(articles: set[str]):
    """Swap an article and the word after it, the capital moving with the first position."""
    def apply(sentence: str, known: set[str]) -> Edit | None:
        words = _words(sentence)
        for i, m in enumerate(words[:-1]):
            nxt = words[i + 1]
            if (m.group().lower() in articles and _joined(sentence, m, nxt) and nxt.group().isalpha()
                    and nxt.group().lower() not in articles and sentence[m.start() - 1:m.start()] not in ("'", "’", "-")):
                first, second = nxt.group(), m.group()
                if second[:1].isupper() and m.start() == 0:
                    first, second = _case_like(second, first), second.lower()
                return Edit("word_order", m.start(), nxt.end(), f"{first} {second}")
        return None
    return apply


def _not_before(skip: set[str]) -> Guard:
    """The next word is a word (joined by a space) and not one of `skip` (pronoun uses: `l'un des`, `una de`)."""
    return _next_word(lambda w: w.isalpha() and w.lower() not in skip)


def _not_after(pronouns: set[str], then: Guard) -> Guard:
    def guard(sentence: str, words: list[re.Match], i: int) -> bool:
        previous = words[i - 1].group().lower() if i > 0 else ""
        return previous not in pronouns and then(sentence, words, i)
    return guard


def _noun_case(sentence: str, known: set[str]) -> Edit | None:
    """German nouns are capitalised: the first noun after an article written in lower case."""
    articles = {"der", "die", "das", "den", "dem", "des", "ein", "eine", "einen", "einem", "einer"}
    words = _words(sentence)
    for i, m in enumerate(words[:-1]):
        if m.group().lower() in articles and _capital_word(sentence, words, i):
            noun = words[i + 1]
            return Edit("noun_case", noun.start(), noun.start() + 1, noun.group()[0].lower())
    return None


def _plural_next(ending: str) -> Guard:
    """The next word is a lower-case word ending as plurals do (`los archivos` → `el archivos`)."""
    return _next_word(lambda w: w.isalpha() and w[:1].islower() and len(w) > 3 and w.endswith(ending))


def _de_no_sie(sentence: str, words: list[re.Match], i: int) -> bool:
    """Not next to `sie` or `es`, which may be singular or plural (`sie hat` and `sie haben` are both German)."""
    return not {w.group().lower() for w in words[max(i - 1, 0):i + 2] if w is not words[i]} & {"sie", "es"}


def _fr_noun(word: str) -> bool:
    """A lower-case word that can follow an article (not a function word: `un ou plusieurs`, `une des`)."""
    return word.isalpha() and word[:1].islower() and word not in FR_NOT_NOUNS


def _fr_noun_not_infinitive(word: str) -> bool:
    """After `le`/`la`, not a word shaped like an infinitive either (`pour le modifier`: `le` is a pronoun there)."""
    return _fr_noun(word) and not FR_INFINITIVE.search(word)


def _earliest(*rules):
    """The edit of whichever rule applies first in the sentence."""
    def apply(sentence: str, known: set[str]) -> Edit | None:
        edits = [e for e in (rule(sentence, known) for rule in rules) if e is not None]
        return min(edits, key=lambda e: e.start, default=None)
    return apply


FR_PRONOUNS = {"je", "tu", "il", "elle", "on", "nous", "vous", "ils", "elles", "ne", "me", "te", "se", "le", "la", "les", "qui"}
FR_INFINITIVE = re.compile(r"(er|ir|re|oir)$")
FR_NOT_NOUNS = {"de", "des", "du", "à", "et", "ou", "par", "seul", "seule", "même", "plus", "moins"}

RULES: dict[str, dict[str, Callable[[str, set[str]], Edit | None]]] = {
    "en": {
        "number": _swap("number", _both_ways({"is": "are", "was": "were", "has": "have"})),
        "article": _swap("article", {"a": "an", "an": "a"}, _lower_word()),
        "word_order": _word_order({"the", "a", "an"}),
    },
    "fr": {
        "elision": _elision("elision", {"l": "le", "d": "de", "j": "je", "m": "me", "n": "ne", "s": "se", "t": "te",
                                        "c": "ce", "qu": "que", "jusqu": "jusque", "lorsqu": "lorsque", "puisqu": "puisque"}),
        "contraction": _swap("contraction", {"du": "de le", "au": "à le", "aux": "à les"}, _lower_word()),
        "gender": _earliest(_swap("gender", _both_ways({"un": "une"}), _next_word(_fr_noun)),
                            _swap("gender", _both_ways({"le": "la"}), _not_after(FR_PRONOUNS, _next_word(_fr_noun_not_infinitive)))),
        "number": _swap("number", _both_ways({"est": "sont", "peut": "peuvent", "doit": "doivent"})),
        "accent": _accent("éèêàùâîôûëïç"),
        "word_order": _word_order({"le", "la", "les", "un", "une"}),
    },
    "de": {
        "gender": _swap("gender", _both_ways({"die": "das", "ein": "eine"}), _capital_word),
        "number": _swap("number", _both_ways({"ist": "sind", "wird": "werden", "hat": "haben", "kann": "können", "muss": "müssen"}), _de_no_sie),
        "noun_case": _noun_case,
        "accent": _accent("äöü"),
        "word_order": _word_order({"der", "die", "das", "den", "dem", "des", "ein", "eine", "einen", "einem", "einer"}),
    },
    "es": {
        "contraction": _swap("contraction", {"del": "de el", "al": "a el"}, _lower_word()),
        "gender": _swap("gender", {"el": "la", "un": "una", "una": "un"}, _lower_word({"que", "cual", "de", "del", "y", "o"})),
        "number": _swap("number", {"los": "el", "las": "la"}, _plural_next("s")),
        "accent": _accent("áéíóúñ"),
        "word_order": _word_order({"el", "la", "los", "las", "un", "una"}),
    },
    "it": {
        "elision": _elision("elision", {"l": "lo", "dell": "dello", "nell": "nello", "all": "allo", "dall": "dallo",
                                        "sull": "sullo", "quell": "quello", "un": "uno"}),
        "contraction": _swap("contraction", {"del": "di il", "della": "di la", "delle": "di le", "nel": "in il", "nella": "in la",
                                             "al": "a il", "alla": "a la", "dal": "da il", "dalla": "da la", "sul": "su il",
                                             "sulla": "su la"}, _lower_word()),
        "gender": _swap("gender", {"il": "la", "un": "una", "una": "un"}, _lower_word({"quale", "che", "cui", "di", "dei", "delle", "e", "o"})),
        "number": _swap("number", {"i": "il", "gli": "lo"}, _plural_next("i")),
        "accent": _accent("àèéìòù"),
        "word_order": _word_order({"il", "lo", "la", "gli", "le", "un", "una"}),
    },
    "pt": {
        "contraction": _swap("contraction", {"do": "de o", "da": "de a", "dos": "de os", "das": "de as", "no": "em o", "na": "em a",
                                             "nas": "em as", "ao": "a o", "aos": "a os", "pelo": "por o", "pela": "por a"}, _lower_word()),
        "gender": _swap("gender", {"um": "uma", "uma": "um"}, _lower_word({"de", "dos", "das", "e", "ou"})),
        "number": _swap("number", {"os": "o", "as": "a"}, _plural_next("s")),
        "accent": _accent("áâãàéêíóôõúç"),
        "word_order": _word_order({"o", "a", "os", "as", "um", "uma"}),
    },
}


