"""The C inner loops of the corpus stage give what the Python they replace gives, on awkward text."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

from fournil.corpus import _kernels
from fournil.corpus.langid import make_identifier
from fournil.corpus.quality import Words

LETTER, ALNUM = re.compile(r"[^\W\d_]"), re.compile(r"[^\W_]")
# every kind of str (1, 2 and 4 bytes a character), Unicode white space str.split() knows, digits of other scripts
ALPHABET = ["a", "B", "é", "ß", "9", "_", "-", "#", "…", "日", "٣", "²", "Ⅷ", "😀", "𝔸", " ", "\t", "\n", "\xa0",
            "\u2003", "\u3000", "\x1c", "\x85", "\u200b"]


def python_words(text: str, by_chars: bool) -> tuple[list[str], list[int], list[int], list[int]]:
    """The words, each word's id (its first index), each distinct word's first index and classes, in Python."""
    words = [c for c in text if not c.isspace()] if by_chars else text.split()
    first: dict[str, int] = {}
    ids = [first.setdefault(w, i) for i, w in enumerate(words)]
    return words, ids, list(first.values()), [bool(LETTER.search(w)) | bool(ALNUM.search(w)) << 1 for w in first]


@pytest.mark.parametrize("by_chars", [False, True])
def test_word_ids_are_str_split_s_words(by_chars):
    rng = random.Random(3)
    for _ in range(3000):
        text = "".join(rng.choices(ALPHABET, k=rng.randrange(0, 30)))
        split, ids, positions, classes = python_words(text, by_chars)
        words = Words.of(text, by_chars)
        if not split:
            assert words is None
            continue
        assert words.ids.tolist() == ids and words.lengths.tolist() == list(map(len, split)), repr(text)
        assert words.positions.tolist() == positions and words.classes.tolist() == classes, repr(text)
        hashes = dict(zip(words.hashes.tolist(), positions))  # one hash per distinct word
        assert len(hashes) == len(positions)
        assert _kernels.word_count(text) == len(text.split())


def test_word_hashes_do_not_depend_on_the_string_s_kind_and_stop_short_texts():
    plain, wide = Words.of("été à Paris", False), Words.of("été à Paris 😀", False)
    assert wide.hashes[:3].tolist() == plain.hashes.tolist()
    assert len(set(Words.of("a b ab ba aa bb", False).hashes.tolist())) == 6
    assert Words.of("un deux trois", False, min_words=4) is None
    assert Words.of("un deux trois", False, min_words=3) is not None


def test_langid_scores_of_a_batch_are_each_text_s_own():
    """Texts are walked sixteen side by side: a batch of many lengths gives each text the bits it gets alone."""
    ours = make_identifier(("fr", "en", "de"), "py3langid", None)
    rng = random.Random(5)
    words = "le chat the dog der Hund été über ÉCOLE 42 !".split()
    texts = [" ".join(rng.choices(words, k=rng.randrange(0, 60))) for _ in range(70)]
    alone = np.concatenate([ours.probabilities([text]) for text in texts])
    assert np.array_equal(ours.probabilities(texts), alone)


def test_langid_scores_refuse_inputs_that_do_not_fit():
    ours = make_identifier(("fr", "en", "de"), "py3langid", None)
    data, scores, featured = b"abc", np.empty((1, 3)), np.empty(1, dtype=bool)
    model = (ours._moves, ours._rows, ours._emits, ours._weights)
    with pytest.raises(ValueError, match="do not fit"):
        _kernels.langid_scores(data, np.array([0, 4], dtype=np.int64), *model, scores, featured)
    with pytest.raises(ValueError, match="left its table"):
        _kernels.langid_scores(data, np.array([0, 3], dtype=np.int64), ours._moves[:256], *model[1:], scores, featured)
    with pytest.raises(ValueError, match="number of texts"):
        _kernels.langid_scores(data, np.array([0, 3], dtype=np.int64), *model, scores, np.empty(2, dtype=bool))


def test_word_hashes_are_the_polynomial_of_each_run_of_word_characters():
    from fournil.corpus.ngrams import BASE, _mix, normalised_word_hashes

    def reference(text: str) -> list[int]:
        hashes = []
        for run in re.findall(r"\w+", text.lower()):
            value = sum((ord(c) + 1) * pow(BASE, j, 1 << 64) for j, c in enumerate(run)) % (1 << 64)
            hashes.append(int(_mix(np.array([value], dtype=np.uint64))[0]))
        return hashes

    rng = random.Random(11)
    for _ in range(2000):
        text = "".join(rng.choices(ALPHABET + ["Z", "É", "'", ".", "Σ"], k=rng.randrange(0, 40)))
        assert normalised_word_hashes(text).tolist() == reference(text), repr(text)


def test_minhash_lowers_each_row_to_its_smallest_multiply_add():
    rng = np.random.default_rng(0)
    shingles, a, b = (rng.integers(0, 2**63, size=k, dtype=np.uint64) for k in (500, 112, 112))
    signature = np.full(112, np.iinfo(np.uint64).max, dtype=np.uint64)
    _kernels.minhash(shingles, a, b, signature)
    assert np.array_equal(signature, (shingles[:, None] * a + b).min(axis=0))
    with pytest.raises(ValueError, match="one length"):
        _kernels.minhash(shingles, a, b[:3], signature)


def test_tidy_flags_are_the_two_searches_they_replace():
    hint = re.compile("[\u00c2-\u00f4][\u0080-\u00bf\u2018-\u203a\u20ac\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc\u2122]")
    control = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufeff]")
    pieces = ["a", "é", "Ã", "©", "â", "€", "™", "’", "ô", "õ", "\x00", "\x1b", "\t", "\n", "\r", "\x7f", "\ufeff", "😀", "\x80", "Å"]
    rng = random.Random(13)
    for _ in range(5000):
        text = "".join(rng.choices(pieces, k=rng.randrange(0, 12)))
        assert _kernels.tidy_flags(text) == bool(hint.search(text)) | bool(control.search(text)) << 1, repr(text)


def test_collapsed_hash_is_a_hash_of_the_collapsed_text():
    rng = random.Random(17)
    seen: dict[int, str] = {}
    for _ in range(5000):
        text = "".join(rng.choices(ALPHABET[:8] + [" ", "\n", "\u3000"], k=rng.randrange(0, 10)))
        collapsed = " ".join(text.split())
        key = _kernels.collapsed_hash(text)
        assert key == _kernels.collapsed_hash(collapsed) == _kernels.collapsed_hash(f" \t{collapsed}\n")
        assert seen.setdefault(key, collapsed) == collapsed  # different texts, different keys
    assert len(seen) > 1000
