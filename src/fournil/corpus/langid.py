"""Language identification down to the paragraph, and routing of paragraphs to their own language.

Each paragraph (blank-line separated) long enough to be identified gets a probability per recipe
language. The document's language is the one holding most of its identified bytes; paragraphs
confidently in another recipe language are moved out (an English passage left untranslated in a
French manual becomes English text, not noise in French); the document's score is the mean
probability of its language over the paragraphs it keeps, weighted by their size. Identifying
paragraphs once and combining them costs one pass over the bytes instead of two.

py3langid's own loop walks its tokenizer one byte at a time in Python; `Py3LangId` runs the same
model on a whole batch of paragraphs at once in C (`_kernels.langid_scores`: sixteen paragraphs
walked side by side, each one's features counted and weighted in ascending order, as a sparse
product would), which gives the same probabilities sixteen times faster than py3langid's `rank`
(16,783 paragraphs of the shared corpus: 0.047 against 0.77 s CPU).
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fournil.corpus import _kernels
from fournil.errors import FournilError


class Py3LangId:
    """py3langid's model restricted to the recipe's languages (it ships in the wheel), run in batches."""

    def __init__(self, languages: list[str]):
        import py3langid.langid as langid

        model = langid.LanguageIdentifier.from_model_file(langid.MODEL_FILE, norm_probs=True)
        try:
            model.set_languages(languages)
        except ValueError as error:
            raise FournilError(f"corpus.langid: py3langid does not know {error}; use corpus.langid.backend: fasttext with a GlotLID model") from None
        self.labels = list(dict.fromkeys(model.nb_classes))
        self._column_label = np.array([self.labels.index(c) for c in model.nb_classes])  # script aliases share a label
        # the tokenizer automaton: from a state of row r, byte b moves to state moves[r * 256 + b]; states
        # with the same moves share a row (38 thousand rows for 105 thousand states), each state emits
        # at most one feature
        rows = int(np.max(model.tk_row)) + 1
        if len(model.tk_nextmove) != 256 * rows or rows > 2**16:
            raise FournilError("py3langid's model has a tokenizer fournil does not know (not 256 moves a row, or over 65,536 rows)")
        self._moves = np.asarray(model.tk_nextmove, dtype=np.uint32)
        self._rows = np.asarray(model.tk_row, dtype=np.uint16)
        self._emits = np.asarray(model.tk_output, dtype=np.int32)
        self._weights = np.ascontiguousarray(model.nb_ptc, dtype=np.float64)  # feature × class
        self._prior = np.asarray(model.nb_pc, dtype=np.float32)

    def probabilities(self, texts: list[str]) -> np.ndarray:
        """[len(texts), len(labels)] probabilities, as py3langid's `rank` with normalised probabilities.
        A text's row does not depend on the others in the batch, so repeated texts (boilerplate
        paragraphs: 7% of the bytes of a batch of the sample) are scored once."""
        distinct = list(dict.fromkeys(texts))
        if len(distinct) == len(texts):
            return self._probabilities(texts)
        row = {text: i for i, text in enumerate(distinct)}
        return self._probabilities(distinct)[[row[text] for text in texts]]

    def _probabilities(self, texts: list[str]) -> np.ndarray:
        n = len(texts)
        if n == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        encoded = []
        for text in texts:
            if text.isupper():
                text = text.lower()
            if not unicodedata.is_normalized("NFC", text):
                text = unicodedata.normalize("NFC", text)
            encoded.append(text.encode("utf-8", "surrogatepass"))
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=n)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        scores = np.empty((n, self._weights.shape[1]), dtype=np.float64)
        has_features = np.empty(n, dtype=np.bool_)
        _kernels.langid_scores(b"".join(encoded), offsets, self._moves, self._rows, self._emits, self._weights, scores, has_features)
        scores = scores.astype(np.float32)
        scores[has_features] += self._prior  # a featureless text scores 0 everywhere: uniform, as py3langid
        scores *= (1.0 / np.sqrt(np.maximum(lengths, 1))).astype(np.float32)[:, None]
        np.exp(scores - scores.max(axis=1, keepdims=True), out=scores)
        scores /= scores.sum(axis=1, keepdims=True)
        probabilities = np.zeros((n, len(self.labels)), dtype=np.float32)
        np.add.at(probabilities.T, self._column_label, scores.T)
        return probabilities


class FastTextLangId:
    """A user-given fastText model (GlotLID `__label__fra_Latn`, lid.176 `__label__fr`); labels must match recipe codes."""

    def __init__(self, languages: list[str], model_path: str | None):
        if not model_path or not Path(model_path).is_file():
            raise FournilError(f"corpus.langid.model_path = {model_path!r}: give the path of a fastText language-ID model file (GlotLID model.bin or lid.176.bin)")
        try:
            import fasttext
        except ImportError:
            raise FournilError("corpus.langid.backend = fasttext needs the fasttext package: pip install 'fournil[langid]'") from None
        try:
            self.model = fasttext.load_model(model_path)
        except ValueError as error:
            raise FournilError(f"corpus.langid.model_path = {model_path!r}: not a fastText model ({error})") from None
        self.labels = list(languages)
        self.column = {}  # model label → column of the recipe language it names
        for label in self.model.get_labels():
            code = recipe_code(label.removeprefix("__label__"), self.labels)
            if code is not None:
                self.column[label] = self.labels.index(code)
        missing = sorted(set(self.labels) - {self.labels[i] for i in self.column.values()})
        if missing:
            raise FournilError(f"corpus.langid.model_path = {model_path!r}: the model has no label for {', '.join(missing)}; "
                               "use a model that knows every recipe language (GlotLID covers 2,000)")

    def probabilities(self, texts: list[str]) -> np.ndarray:
        """[len(texts), len(labels)]; a row of zeros when the model gives none of the recipe's languages."""
        found = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        labels, probs = self.model.predict([text.replace("\n", " ") for text in texts], k=-1)
        for row, (row_labels, row_probs) in enumerate(zip(labels, probs)):
            for label, prob in zip(row_labels, row_probs):
                i = self.column.get(label)
                if i is not None:
                    found[row, i] += prob
        return found


def recipe_code(label: str, languages: list[str]) -> str | None:
    """The recipe language a model label names: itself (`fr`, `fra_Latn`), or its ISO 639-3 code
    with a script (GlotLID's `fra_Latn`) mapped to the recipe's ISO 639-1 code (`fr`)."""
    if label in languages:
        return label
    base = label.split("_")[0]
    if base in languages:
        return base
    two = ISO_639_3_TO_1.get(base)
    return two if two in languages else None


ISO_639_3_TO_1 = {
    "ara": "ar", "bul": "bg", "cat": "ca", "ces": "cs", "dan": "da", "deu": "de", "ell": "el", "eng": "en",
    "spa": "es", "est": "et", "eus": "eu", "fas": "fa", "pes": "fa", "fin": "fi", "fra": "fr", "gle": "ga",
    "glg": "gl", "heb": "he", "hin": "hi", "hrv": "hr", "hun": "hu", "ind": "id", "ita": "it", "jpn": "ja",
    "kor": "ko", "lit": "lt", "lav": "lv", "lvs": "lv", "nld": "nl", "nob": "no", "nor": "no", "pol": "pl",
    "por": "pt", "ron": "ro", "rus": "ru", "slk": "sk", "slv": "sl", "swe": "sv", "tha": "th", "tur": "tr",
    "ukr": "uk", "vie": "vi", "cmn": "zh", "zho": "zh", "swh": "sw", "swa": "sw", "bre": "br", "oci": "oc",
    "cym": "cy", "ltz": "lb", "afr": "af", "isl": "is", "mlt": "mt", "sqi": "sq", "als": "sq",
}


@functools.lru_cache(maxsize=4)
def make_identifier(languages: tuple[str, ...], backend: str, model_path: str | None):
    """Loading py3langid's model takes seconds: load once per process (forked workers inherit it)."""
    return FastTextLangId(list(languages), model_path) if backend == "fasttext" else Py3LangId(list(languages))


@dataclass
class Routed:
    """The outcome for one document: its language and score, the text it keeps, the text moved out."""

    lang: str
    score: float
    text: str
    moved: dict[str, tuple[str, float]] = field(default_factory=dict)  # lang → (text, score)
    removed: list[str] = field(default_factory=list)  # paragraphs in no recipe language (code, listings)


def route_many(texts: list[str], identifier, min_chars: int, max_chars: int, route_min_score: float,
               do_route: bool, unidentified_below: float = 0.0) -> list[Routed | None]:
    """Identify documents paragraph by paragraph, all paragraphs in one batch; None where no language could be scored.

    `identifier` has `labels` and `probabilities(texts) -> [len(texts), len(labels)]`. A paragraph
    whose probability of the document's language is below `unidentified_below`, and which no other
    language claims with `route_min_score`, is removed (code, command output, lists of names). The
    decisions are made for the whole batch with numpy: only documents that lose a paragraph are
    then cut apart in Python.
    """
    if not texts:
        return []
    split = [text.split("\n\n") for text in texts]
    requests: list[str] = []
    chosen: list[list[int]] = []  # per document, the paragraphs identified ([] = the document's start)
    for text, paragraphs in zip(texts, split):
        picked = [i for i, p in enumerate(paragraphs) if len(p) >= min_chars]
        chosen.append(picked)
        if picked:
            requests.extend(paragraphs[i][:max_chars] for i in picked)
        else:
            requests.append(text[:max_chars])
    probs = identifier.probabilities(requests)
    rows = np.fromiter((len(picked) or 1 for picked in chosen), dtype=np.int64, count=len(texts))  # requests per document
    first = np.cumsum(rows) - rows
    doc_of = np.repeat(np.arange(len(texts)), rows)
    scored = probs.any(axis=1)
    weights = np.fromiter(map(len, requests), dtype=np.float64, count=len(requests)) * scored  # characters read
    lang = np.add.reduceat(weights[:, None] * probs.astype(np.float64), first).argmax(axis=1)  # most of the identified text
    own = probs[np.arange(len(requests)), lang[doc_of]].astype(np.float64)
    best, top = probs.argmax(axis=1), probs.max(axis=1)
    moving = scored & (best != lang[doc_of]) & (top >= route_min_score) & do_route
    removing = scored & ~moving & (own < unidentified_below) & (top < route_min_score) & np.repeat([bool(c) for c in chosen], rows)
    kept = weights * ~moving
    kept_chars = np.add.reduceat(kept, first)
    score = np.divide(np.add.reduceat(kept * own, first), kept_chars, out=np.zeros(len(texts)), where=kept_chars > 0)
    identified = np.logical_or.reduceat(scored, first)
    cut = np.logical_or.reduceat(moving | removing, first)
    labels = identifier.labels
    results: list[Routed | None] = []
    for d, text in enumerate(texts):
        if not identified[d]:
            results.append(None)
        elif not cut[d]:
            results.append(Routed(labels[lang[d]], float(score[d]), text))
        else:
            span = slice(first[d], first[d] + rows[d])
            results.append(_cut(split[d], chosen[d], probs[span], weights[span], moving[span], removing[span], labels,
                                Routed(labels[lang[d]], float(score[d]), text)))
    return results


def _cut(paragraphs: list[str], picked: list[int], probs: np.ndarray, weights: np.ndarray, moving: np.ndarray,
         removing: np.ndarray, labels: list[str], routed: Routed) -> Routed:
    """The document without its moved and removed paragraphs; the moved ones joined per language, with their score."""
    best = probs.argmax(axis=1)
    for target in sorted(set(best[moving].tolist()), key=lambda t: labels[t]):
        rows = np.flatnonzero(moving & (best == target))
        w = weights[rows]
        routed.moved[labels[target]] = ("\n\n".join(paragraphs[picked[r]] for r in rows), float(w @ probs[rows, target] / w.sum()))
    out = {picked[r] for r in np.flatnonzero(moving | removing)}
    routed.text = "\n\n".join(p for i, p in enumerate(paragraphs) if i not in out)
    routed.removed = [paragraphs[picked[r]] for r in np.flatnonzero(removing)]
    return routed
