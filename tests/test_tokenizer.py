"""Tokenizer training, losslessness, word splitting, metrics and the saved folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fournil.corpus.documents import read_documents
from fournil.errors import FournilError
from fournil.tokenizer import SPECIAL_TOKENS, load, special_ids
from fournil.tokenizer.config import TokenizerConfig
from fournil.tokenizer.metrics import language_figures, measure, parity
from fournil.tokenizer.sample import BalancedSample, pieces
from fournil.tokenizer.save import save
from fournil.tokenizer.train import new_tokenizer, train_tokenizer
from fournil.tokenizer.words import words

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


def sample_texts(lang: str, limit: int = 200) -> list[str]:
    texts = []
    for path in sorted((SAMPLE / lang).glob("*.jsonl.zst")):
        texts += [d["text"] for d, _ in zip(read_documents(path), range(limit))]
    return texts


@pytest.fixture(scope="module")
def texts() -> dict[str, list[str]]:
    return {lang: sample_texts(lang) for lang in ("en", "fr", "de")}


@pytest.fixture(scope="module")
def folder(tmp_path_factory, texts) -> Path:
    sample = BalancedSample(texts, {"en": 1, "fr": 1, "de": 1}, 600_000, seed=3)
    tokenizer = train_tokenizer(sample, TokenizerConfig(vocab_size=1500))
    directory = tmp_path_factory.mktemp("tok")
    save(tokenizer, directory)
    return directory


def test_special_tokens_come_first_with_fixed_ids(folder):
    tokenizer = load(folder)
    assert [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    assert special_ids(folder) == {"bos": 0, "eos": 1, "pad": 2}
    assert tokenizer.get_vocab_size() == 1500


def test_missing_folder_is_a_user_error(tmp_path):
    with pytest.raises(FournilError, match="no such file"):
        load(tmp_path)
    with pytest.raises(FournilError, match="no such file"):
        special_ids(tmp_path)


def test_balanced_sample_gives_each_language_its_share_whatever_its_size():
    texts = {"big": ["a b c d\n\n" * 500] * 40, "small": ["x y z\n\n" * 100]}  # 200,000 vs 700 chars
    sample = BalancedSample(texts, {"big": 3, "small": 1}, 40_000, seed=1)
    drawn = list(sample)
    assert abs(sample.chars["big"] - 30_000) <= 4000 and abs(sample.chars["small"] - 10_000) <= 700
    assert sum(map(len, drawn)) == sum(sample.chars.values())


def test_pieces_cut_at_paragraphs_and_join_back():
    text = "\n\n".join(f"paragraph {i} " * 30 for i in range(100))
    cut = list(pieces(text, 1000))
    assert "".join(cut) == text and len(cut) > 10
    assert all(len(p) <= 1000 for p in cut) and all(p.endswith("\n\n") for p in cut[:-1])


@pytest.mark.parametrize("text, expected", [
    ("l'été", ["l", "'été"]),  # as Qwen and Llama-3 split it: llama.cpp has no pre-tokenizer that keeps elision apart
    ("dell'anno", ["dell", "'anno"]),
    ("don't", ["don", "'t"]),
    ("John's", ["John", "'s"]),
    ("e\u0301te\u0301", ["e\u0301te\u0301"]),  # decomposed accents stay with their letters
    ("नमस्ते", ["नमस्ते"]),  # and Devanagari's vowel signs and virama with theirs
    ("2024", ["2", "0", "2", "4"]),
    ("in 2024,", ["in", " ", "2", "0", "2", "4", ","]),
    ("a  1", ["a", " ", " ", "1"]),
])
def test_qwen35_pretokenizer_keeps_marks_and_splits_digits(text, expected):
    pretokenize = new_tokenizer("qwen35").pre_tokenizer.pre_tokenize_str
    assert [text[a:b] for _, (a, b) in pretokenize(text)] == expected


def test_default_pretokenizer_groups_digits_by_three_as_llama3_does():
    tokenizer = new_tokenizer()
    assert [p for p, _ in tokenizer.pre_tokenizer.pre_tokenize_str("12345 678 e\u0301")] == ["123", "45", "Ġ", "678", "Ġe", "Ìģ"]
    assert json.loads(tokenizer.to_str())["model"]["ignore_merges"]  # as llama.cpp's llama-bpe encodes


EDGE_CASES = [
    "", " ", "   \n\n\n  \t\r\n", "L'été « déjà » là ! 😀👍🏽", "e\u0301\u0301\u0301", "\x00\x01\x1b[0m\x7f",
    "東京都の天気", "مرحبا بالعالم", "Ελληνικά", "🏳️‍🌈", "<|end_of_text|><|pad|> <|user|>", "\ufeff\u200b\u2028",
]


@pytest.mark.parametrize("text", EDGE_CASES)
def test_lossless_on_edge_cases(folder, text):
    tokenizer = load(folder)
    assert tokenizer.decode(tokenizer.encode(text).ids) == text


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_lossless_on_any_string(folder_cache, text):
    tokenizer = folder_cache
    assert tokenizer.decode(tokenizer.encode(text).ids) == text


@pytest.fixture(scope="module")
def folder_cache(folder):
    return load(folder)


def test_special_token_strings_in_text_are_text_unless_asked(folder):
    ids = load(folder).encode_batch_fast(["a <|end_of_text|> b"], add_special_tokens=False)[0].ids
    assert 1 not in ids and len(ids) > 3
    assert 1 in load(folder, special_strings_as_text=False).encode("a <|end_of_text|> b").ids


def test_transformers_loads_and_encodes_identically(folder, texts):
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoTokenizer.from_pretrained(str(folder))
    tokenizer = load(folder, special_strings_as_text=False)  # as transformers does
    assert (hf.bos_token_id, hf.eos_token_id, hf.pad_token_id) == (0, 1, 2)
    for text in [texts["fr"][0][:3000], texts["de"][1][:3000], *EDGE_CASES[:6]]:
        ids = tokenizer.encode(text).ids
        assert hf.encode(text) == ids
        assert hf.decode(ids) == text
    chat = hf.apply_chat_template([{"role": "user", "content": "Salut"}], tokenize=False, add_generation_prompt=True)
    assert chat == "<|im_start|>user\nSalut<|im_end|>\n<|im_start|>assistant\n"


def test_training_is_deterministic(texts):
    config = TokenizerConfig(vocab_size=600)
    small = {lang: t[:20] for lang, t in texts.items()}
    first = train_tokenizer(BalancedSample(small, {"en": 1, "fr": 1}, 100_000, 5), config).to_str()
    second = train_tokenizer(BalancedSample(small, {"en": 1, "fr": 1}, 100_000, 5), config).to_str()
    assert first == second


@pytest.mark.parametrize("text, expected", [
    ("L'été dernier, j'ai vu l’homme.", ["L'", "été", "dernier", "j'", "ai", "vu", "l’", "homme"]),
    ("Don't touch John's car; it's 3.14", ["Don't", "touch", "John's", "car", "it's", "3", "14"]),
    ("peut-être aujourd'hui", ["peut", "être", "aujourd'", "hui"]),
    ("dell'anno, l'ho", ["dell'", "anno", "l'", "ho"]),
    ("e\u0301te\u0301 東京 — !!", ["e\u0301te\u0301", "東京"]),
])
def test_word_splitter_handles_elision(text, expected):
    assert words(text) == expected


class WhitespaceEncoder:
    """Every run of non-spaces is one token, every run of spaces another: easy to count by hand."""

    name, vocab_size = "ws", 0

    def token_spans(self, texts):
        import numpy as np
        import regex

        out = []
        for text in texts:
            spans = [m.span() for m in regex.finditer(r"\S+|\s+", text)]
            arr = np.array(spans, dtype=np.int64).reshape(-1, 2)
            out.append((arr[:, 0], arr[:, 1]))
        return out

    def counts(self, texts):
        return [len(s[0]) for s in self.token_spans(texts)]


def test_figures_count_tokens_words_and_split_words():
    # "l'été est là" → tokens ["l'été", " ", "est", " ", "là"] (5); words ["l'", "été", "est", "là"] (4); "l'été" token spans 2 words
    figures = language_figures(WhitespaceEncoder(), ["l'été est là"])
    assert figures["tokens"] == 5 and figures["words"] == 4
    assert figures["fertility"] == 1.25
    assert figures["split_word_share"] == 0.0  # each word lies inside one token
    assert figures["chars_per_token"] == 12 / 5 and figures["bytes_per_token"] == 15 / 5  # é, é, à take two bytes


def test_split_word_share_counts_words_over_two_tokens(folder):
    from fournil.tokenizer.encoders import HFEncoder

    encoder = HFEncoder(load(folder))
    figures = language_figures(encoder, ["zqxjkvw zqxjkvw"])  # an unseen word is split into several tokens
    assert figures["words"] == 2 and figures["split_word_share"] == 1.0


def test_parity_is_ratio_of_token_counts():
    pairs = [("a b", "a b c d"), ("c", "c d")]  # English 3 + 1 tokens, other 7 + 3
    assert parity(WhitespaceEncoder(), pairs) == round(10 / 4, 4)
    report = measure(WhitespaceEncoder(), {"en": ["a b"], "fr": ["a b c"]}, {"fr": pairs})
    assert report["per_language"]["en"]["parity_vs_en"] == 1.0
    assert report["per_language"]["fr"]["parity_vs_en"] == 2.5


def test_tokenizer_config_is_checked():
    with pytest.raises(ValueError):
        TokenizerConfig(vocab_size=100)
    with pytest.raises(ValueError):
        TokenizerConfig(shares={"fr": -1})
    with pytest.raises(ValueError):
        TokenizerConfig(vocab_szie=1000)
    assert json.loads(TokenizerConfig().model_dump_json())["vocab_size"] == 32000


HARD = st.sampled_from([" ", "  ", "\n", "\r\n", "\t", "\u00a0", "\u0301", "\u0308", "\u200d", "😀", "🏽", "é", "ß", "ǅ", "字", "ا", "ñ", "'", "’", "0", "7", "<|", "|>", "a", "Z"])


@settings(max_examples=200, deadline=None)
@given(st.lists(HARD, max_size=60).map("".join))
def test_lossless_on_spaces_marks_emoji_and_digits(folder_cache, text):
    assert folder_cache.decode(folder_cache.encode(text).ids) == text
