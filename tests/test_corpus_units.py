"""The corpus building blocks: normalisation, PII, per-language settings, routing, dedup, readers."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

from fournil.corpus.dedup import MinHasher, exact_key
from fournil.corpus.langid import make_identifier, route_many
from fournil.corpus.ledger import Ledger
from fournil.corpus.ngrams import normalised_word_hashes
from fournil.corpus.normalise import normalise_text
from fournil.corpus.pii import scrub
from fournil.corpus.quality import QualityRules, load_settings
from fournil.corpus.readers import SourceReader


def test_normalise_repairs_mojibake_and_keeps_meaning():
    assert normalise_text("Ã‰tÃ© Ã  Paris â€” dÃ©jÃ \r\n") == "Été à Paris — déjà"
    kept = "L’ÉTÉ « 2024 » ﬁn\tx"
    assert normalise_text(kept) == kept  # case, accents, digits, curly quotes, ligature, tab
    assert normalise_text("Cafe\u0301  \n\n\n\n\x00fin") == "Café\n\nfin"


def test_normalise_skips_only_rewrites_that_would_change_nothing():
    """The guarded rewrites give what the three substitutions always run give, on text full of what they remove."""
    from fournil.corpus import normalise as n

    def unguarded(text: str) -> str:
        text = n.CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
        text = n.unicodedata.normalize("NFC", text)
        return n.BLANK_LINES.sub("\n\n", n.TRAILING_SPACE.sub("\n", text)).strip()

    alphabet = [" ", "\t", "\n", "\r", "\x1b", "[", "3", ";", "m", "\x00", "\x7f", "\ufeff", "\x0c", "a", "e\u0301", "é"]
    rng = random.Random(7)
    texts = ["".join(rng.choices(alphabet, k=rng.randrange(0, 40))) for _ in range(4000)]
    changed = sum(normalise_text(t) != t.strip() for t in texts)
    assert [normalise_text(t) for t in texts] == [unguarded(t) for t in texts]
    assert changed > 3000  # the guards were tested on text that needed the rewrites


def test_pii_patterns_find_what_the_plain_patterns_find():
    """The class-first address and phone patterns match the same spans as the plain ones, and the
    digit guard skips only text where neither finds anything, on random text made of their pieces."""
    from fournil.corpus import pii

    plain_ip = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
    plain_phone = re.compile(r"(?<![\w.+-])(?:\+\d{1,3}[ .-]?(?:\(0\)[ .-]?)?\d{1,4}(?:[ .-]\d{2,4}){2,4}"
                             r"|0\d(?:[ .]\d{2}){4}|\(\d{3}\) ?\d{3}-\d{4}|\d{3}-\d{3}-\d{4})(?![\w.-]*\d)")
    pieces = ["0", "1", "5", "12", "555", "1.", "10.", "255.", "12 ", "555-", " ", ".", "-", "+", "(", ")", "(0)", "a", "é", "_", "\n", "+33 ", "06 "]
    rng = random.Random(11)
    texts = ["".join(rng.choices(pieces, k=rng.randrange(1, 30))) for _ in range(20000)]
    found_ip = found_phone = 0
    for text in texts:
        ip = [m.span() for m in plain_ip.finditer(text)]
        phone = [m.span() for m in plain_phone.finditer(text)]
        assert [m.span() for m in pii.IPV4.finditer(text)] == ip, text
        assert [m.span() for m in pii.PHONE.finditer(text)] == phone, text
        assert pii.NUMBERS.search(text) or not (ip or phone), text
        found_ip += bool(ip)
        found_phone += bool(phone)
    assert found_ip > 100 and found_phone > 100  # both patterns were compared where they match


def test_pii_replaces_personal_data_but_not_private_addresses_or_versions():
    text, counts = scrub("Mail jean@exemple.fr, serveur 8.8.8.8, box 192.168.1.1, tél. +33 1 23 45 67 89 ou 06 12 34 56 78, version 2.36.1-3 du 2024-05-01.")
    assert "<EMAIL>" in text and "<IP_ADDRESS>" in text and "192.168.1.1" in text
    assert text.count("<PHONE_NUMBER>") == 2 and "2.36.1-3" in text and "2024-05-01" in text
    assert counts == {"email": 1, "ip": 1, "phone": 2}


def test_settings_are_per_language_and_fallback_is_not_english():
    fr, en, xx = load_settings("fr"), load_settings("en"), load_settings("sw")
    assert fr["origin"] == "FineWeb-2 fra_Latn" and "le" in fr["stopwords"] and fr["line_punct_thr"] == 0.1
    assert en["stopwords"] == ["the", "be", "to", "of", "and", "that", "have", "with"]
    assert xx["origin"].startswith("fallback") and xx["stopwords"] == [] and xx["line_punct_thr"] == 0.0
    rng = random.Random(0)
    syllables = ["ha", "ba", "ri", "ya", "su", "bu", "hi", "ra", "fi", "ki", "ngu", "mpe", "ndwa", "ne", "no", "ji"]
    words = ["".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) for _ in range(120)]
    text = " ".join(w + ("." if i % 10 == 9 else "") for i, w in enumerate(words))
    assert QualityRules(xx).check(text) is None  # no English stopword rule on Swahili
    assert QualityRules(en).check(text) == "gopher_too_few_stopwords"


def test_the_stopword_rule_counts_repeats_and_any_case():
    """Two stopwords pass the rule whether they are two distinct words, one word twice or capitalised (the
    text then fails a later rule); one does not."""
    rng = random.Random(1)
    syllables = ["ha", "ba", "ri", "ya", "su", "bu", "hi", "ra", "fi", "ki", "ngu", "mpe", "ndwa", "ne", "no", "ji"]
    words = ["".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) for _ in range(120)]
    rules = QualityRules(load_settings("en"))

    def text(*stopwords):
        placed = words[:40] + list(stopwords) + words[40:]
        return " ".join(w + ("." if i % 10 == 9 else "") for i, w in enumerate(placed))

    for kept in (("the", "of"), ("the", "the"), ("The", "Of"), ("THE", "and")):
        assert rules.check(text(*kept)) == "fineweb_line_punctuation", kept
    for dropped in (("the",), ("The",), ("them", "often")):
        assert rules.check(text(*dropped)) == "gopher_too_few_stopwords", dropped


def test_repetition_rules_catch_repeated_text():
    rules = QualityRules(load_settings("fr"))
    assert rules.check("\n\n".join(["Le chat dort sur le tapis rouge de la maison."] * 20)) == "gopher_dup_paragraphs"


class StubIdentifier:
    labels = ["fr", "en"]

    def probabilities(self, texts):
        return np.array([[0.01, 0.99] if t.startswith("EN") else [0.9, 0.1] for t in texts])


def test_routing_moves_confident_paragraphs_with_a_stub_identifier():
    text = "FR " + "a" * 60 + "\n\nEN " + "b" * 50 + "\n\nshort\n\nFR " + "c" * 60
    result, = route_many([text], StubIdentifier(), min_chars=40, max_chars=300, route_min_score=0.95, do_route=True)
    assert result.lang == "fr" and result.moved["en"][0].startswith("EN ") and abs(result.moved["en"][1] - 0.99) < 1e-9
    assert "EN" not in result.text and "short" in result.text and abs(result.score - 0.9) < 1e-9
    assert route_many([text], StubIdentifier(), 40, 300, 0.95, do_route=False)[0].moved == {}
    short, = route_many(["EN tiny"], StubIdentifier(), 40, 300, 0.95, True)  # no paragraph long enough: the start decides
    assert (short.lang, short.text, short.moved) == ("en", "EN tiny", {})


def test_paragraphs_in_no_recipe_language_are_removed():
    class Three:
        labels = ["fr", "en", "de"]

        def probabilities(self, texts):
            return np.array([[0.2, 0.45, 0.35] if t.startswith("$") else [0.9, 0.05, 0.05] for t in texts])

    text = "FR " + "a" * 60 + "\n\n$ ls -l /usr/share/doc | grep something else\n\nFR " + "c" * 60
    kept, = route_many([text], Three(), 40, 300, 0.5, True, unidentified_below=0.3)
    assert kept.removed == ["$ ls -l /usr/share/doc | grep something else"] and "$" not in kept.text and kept.moved == {}
    assert abs(kept.score - (63 * 0.9 + 44 * 0.2 + 63 * 0.9) / 170) < 1e-6  # the document's score still counts it
    assert route_many([text], Three(), 40, 300, 0.5, True, unidentified_below=0.0)[0].text == text


def test_word_hashes_follow_regex_words_and_ignore_case():
    text = "L'été, l'ÉTÉ! x² snake_case 2024 — fin"
    hashes = normalised_word_hashes(text)
    words = re.findall(r"\w+", text.lower())
    assert len(hashes) == len(words) == 8
    assert len(set(hashes.tolist())) == len(set(words))
    assert hashes[1] == hashes[3] and hashes[0] == hashes[2]
    assert list(normalised_word_hashes("")) == [] and list(normalised_word_hashes(" —, ")) == []


def test_batched_py3langid_matches_py3langid():
    import py3langid.langid as langid

    reference = langid.LanguageIdentifier.from_model_file(langid.MODEL_FILE, norm_probs=True)
    reference.set_languages(["fr", "en", "de"])
    texts = ["Le chat dort sur le tapis rouge de la maison.", "The quick brown fox jumps over the lazy dog.",
             "Der schnelle braune Fuchs springt über den faulen Hund.", "ÉTÉ CAPITALES", "", "1234 5678", "x" * 700 + " été"]
    ours = make_identifier(("fr", "en", "de"), "py3langid", None)
    probs = ours.probabilities(texts)
    for text, row in zip(texts, probs):
        expected = dict(reference.rank(text))
        assert np.allclose(row, [expected[lang] for lang in ours.labels], atol=1e-5), text


def test_near_duplicates_share_a_band_and_distinct_texts_do_not():
    words = [f"mot{i}" for i in range(300)]
    a, b = " ".join(words), " ".join(words[:290] + ["autre"] * 10)
    hasher = MinHasher(5, 14, 8, False, 0)
    bands = lambda t: set(hasher.band_keys(hasher.signature(t)))
    assert bands(a) & bands(b)
    assert not bands(a) & bands(" ".join(reversed(words)))
    assert exact_key("Bonjour  le\nmonde") == exact_key("bonjour le monde")


def test_reader_counts_bad_lines_and_reads_text_files(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(b'{"id": "1", "body": "texte"}\n{"id": 2}\nnot json\n\n{"body": ""}\n')
    (tmp_path / "b.txt").write_text("un document", encoding="utf-8")
    (tmp_path / "c.txt").write_bytes(b"\xff\xfe\xfa")
    ledger = Ledger()
    source = {"name": "s", "lang": "fr", "category": "c", "license": "l", "priority": 0, "format": "auto", "text_field": "body"}
    reader = SourceReader(source, tmp_path, ledger)
    docs = [d for p in sorted(tmp_path.iterdir()) for d in reader.read(p)]
    assert [(d.id, d.text) for d in docs] == [("1", "texte"), ("s/b.txt", "un document")]
    cell = ledger.steps["read"]["fr"]["s"]
    assert cell["read"][0] == 6 and cell["kept"][0] == 2
    assert {k: v[0] for k, v in cell["dropped"].items()} == {"missing_text_field": 1, "invalid_json": 1, "empty_text": 1, "invalid_utf8": 1}
    assert not ledger.unbalanced()


SOURCE = {"name": "s", "lang": "fr", "category": "c", "license": "l", "priority": 0, "format": "auto", "text_field": "text"}


def _read_all(folder, source=SOURCE):
    ledger = Ledger()
    reader = SourceReader(source, folder, ledger)
    docs = [d for p in sorted(folder.iterdir()) for d in reader.read(p)]
    cell = ledger.steps["read"]["fr"]["s"]
    assert not ledger.unbalanced()
    return docs, cell["read"][0], {k: v[0] for k, v in cell["dropped"].items()}


def test_reader_parquet_rows_and_corrupt_file(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": ["a", "b", "c"], "text": ["premier texte", None, "troisième"], "n": [1, 2, 3]}), tmp_path / "x.parquet")
    (tmp_path / "y.parquet").write_bytes(b"PAR1 not really parquet")
    docs, read, dropped = _read_all(tmp_path)
    assert [(d.id, d.text) for d in docs] == [("a", "premier texte"), ("c", "troisième")]
    assert read == 4 and dropped == {"missing_text_field": 1, "corrupt_file": 1}


def test_reader_html_main_text(tmp_path):
    body = "".join(f"<p>Le paragraphe numéro {i} raconte une histoire assez longue pour être le texte principal de la page.</p>" for i in range(8))
    (tmp_path / "a.html").write_text(f"<html><head><title>t</title></head><body><nav><a href='/'>Accueil</a></nav><article>{body}</article>"
                                     "<footer>© pied de page</footer></body></html>", encoding="utf-8")
    (tmp_path / "b.htm").write_text("<html><body><script>var x = 1;</script><div></div></body></html>", encoding="utf-8")
    docs, read, dropped = _read_all(tmp_path)
    assert [d.id for d in docs] == ["s/a.html"] and "Le paragraphe numéro 7" in docs[0].text
    assert "Accueil" not in docs[0].text and "pied de page" not in docs[0].text
    assert read == 2 and dropped == {"no_main_text": 1}


def test_reader_truncated_zst_keeps_whole_lines_and_counts_the_cut(tmp_path):
    import zstandard

    rng = random.Random(0)
    lines = b"".join(b'{"id": "%d", "text": "%s end"}\n' % (i, rng.randbytes(100).hex().encode()) for i in range(2000))
    packed = zstandard.ZstdCompressor(level=1).compress(lines)  # several 128 KB blocks
    (tmp_path / "cut.jsonl.zst").write_bytes(packed[: len(packed) * 3 // 4])
    docs, read, dropped = _read_all(tmp_path)
    assert 0 < len(docs) < 2000 and [d.id for d in docs] == [str(i) for i in range(len(docs))]
    assert all(d.text.endswith(" end") for d in docs)  # no half line
    assert read == len(docs) + 1 and dropped == {"truncated_file": 1}


def test_reader_invalid_utf8_in_plain_text_and_in_a_jsonl_line(tmp_path):
    (tmp_path / "a.txt").write_bytes("café".encode("latin-1"))
    (tmp_path / "b.txt").write_bytes("thé vert".encode("utf-8"))
    (tmp_path / "c.jsonl").write_bytes(b'{"id": "1", "text": "ok"}\n{"id": "2", "text": "caf\xe9"}\n')
    docs, read, dropped = _read_all(tmp_path)
    assert [(d.id, d.text) for d in docs] == [("s/b.txt", "thé vert"), ("1", "ok")]
    assert read == 4 and dropped == {"invalid_utf8": 2}


def test_a_nul_byte_costs_its_line_not_the_file(tmp_path):
    records = [b'{"id": "%d", "text": "texte %d"}\n' % (i, i) for i in range(10)]
    (tmp_path / "a.jsonl").write_bytes(b'{"id": "x", "text": "t\x00\x00"}\n' + b"".join(records))  # NUL in the first line
    (tmp_path / "b.jsonl").write_bytes(records[0] + b"\x00\x01\x02\n" + records[1])  # and in the middle
    docs, read, dropped = _read_all(tmp_path)
    assert [d.id for d in docs] == [str(i) for i in range(10)] + ["0", "1"]
    assert read == 14 and dropped == {"nul_byte": 2}


def test_a_format_without_its_package_fails_before_any_work(tmp_path, monkeypatch):
    import importlib.util

    from fournil.corpus.readers import check_readers
    from fournil.errors import FournilError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "trafilatura" else real(name, *a))
    check_readers([("docs", [tmp_path / "a.jsonl.zst"], "auto")])  # JSONL needs nothing optional
    with pytest.raises(FournilError, match=r"source web: reading html files needs trafilatura; run `pip install 'fournil\[html\]'`"):
        check_readers([("web", [tmp_path / "a.html", tmp_path / "b.jsonl"], "auto")])


def test_the_heldout_sample_takes_sources_in_turn_and_a_smaller_one_is_its_start(tmp_path):
    from fournil.corpus.documents import write_documents
    from fournil.corpus.heldout import heldout_sample

    for source, n in (("b-docs", 3), ("a-docs", 1)):
        write_documents(tmp_path / "heldout" / "fr" / source / "00000.jsonl.zst",
                        [{"id": f"{source}/{i}", "text": f"{source} {i}"} for i in range(n)])
    write_documents(tmp_path / "heldout" / "en" / "a-docs" / "00000.jsonl.zst", [{"id": "en", "text": "english"}])
    assert heldout_sample(tmp_path, "fr", 10) == ["a-docs 0", "b-docs 0", "b-docs 1", "b-docs 2"]
    assert heldout_sample(tmp_path, "fr", 2) == ["a-docs 0", "b-docs 0"]
    assert heldout_sample(tmp_path, "de", 5) == []


def test_shards_written_as_documents_come_are_write_documents_bytes_and_hold_no_documents(tmp_path):
    import tracemalloc

    from fournil.corpus.documents import ShardWriter, read_documents, write_documents

    docs = [{"id": str(i), "text": f"document {i} " + "é" * (i % 50)} for i in range(11)]
    with ShardWriter(tmp_path / "streamed", 4) as writer:
        for doc in docs:
            writer.write(doc)
    for k in range(3):
        write_documents(tmp_path / "whole" / f"{k:05d}.jsonl.zst", docs[4 * k:4 * k + 4])
    assert sorted(p.name for p in (tmp_path / "streamed").iterdir()) == ["00000.jsonl.zst", "00001.jsonl.zst", "00002.jsonl.zst"]
    for k in range(3):
        name = f"{k:05d}.jsonl.zst"
        assert (tmp_path / "streamed" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()

    with pytest.raises(RuntimeError), ShardWriter(tmp_path / "failed", 4) as writer:  # a failed write keeps finished shards only
        for doc in docs[:6]:
            writer.write(doc)
        raise RuntimeError
    assert sorted(p.name for p in (tmp_path / "failed").iterdir()) == ["00000.jsonl.zst"]
    assert [d["id"] for d in read_documents(tmp_path / "failed" / "00000.jsonl.zst")] == ["0", "1", "2", "3"]

    tracemalloc.start()  # 2,000 documents of 10 kB into one shard: 20 MB written, a document held at a time
    with ShardWriter(tmp_path / "big", 1_000_000) as writer:
        for i in range(2_000):
            writer.write({"id": str(i), "text": f"{i:05d}" + "x" * 10_000})
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 200_000


def test_decontaminator_finds_one_shared_ngram_through_its_bit_table(tmp_path):
    """One 13-word overlap names its benchmark (the bit table lets every candidate through); 12 words are not enough."""
    from fournil.corpus.decontaminate import Decontaminator

    words = "le chat noir dort sur le canapé rouge du salon pendant que la pluie tombe".split()
    (tmp_path / "quiz.tsv").write_text("id\tquestion\n1\tQuelle heure est-il à Paris ce soir ?\n")
    (tmp_path / "flores.tsv").write_text("id\tsentence\n1\t" + " ".join(words) + "\n")
    checker = Decontaminator([tmp_path / "quiz.tsv", tmp_path / "flores.tsv"], 13)
    filler = "Un texte ordinaire qui parle d'autre chose, de cuisine et de jardins. " * 20
    assert checker.benchmark(filler + " ".join(words[1:14]).upper() + "! " + filler) == "flores"
    assert checker.benchmark(filler + " ".join(words[:12]) + " " + filler) is None
    assert checker.benchmark(filler) is None and checker.benchmark("") is None


def test_a_corpus_step_counts_every_document_in_its_ledger_and_in_datatrove_stats():
    """Stats are updated a batch at a time; their totals still match the documents, over several batches."""
    from datatrove.data import Document

    from fournil.corpus.steps import CorpusStep

    class DropOdd(CorpusStep):
        name = "drop_odd"

        def filter(self, doc):
            doc.text = doc.text.upper()
            return (False, "odd") if int(doc.id) % 2 else True

    docs = [Document(text="abc" * (i % 7 + 1), id=str(i), metadata={"lang": "fr", "source": "s"}) for i in range(1300)]
    step = DropOdd()
    kept = list(step.run(iter(docs)))
    assert [d.id for d in kept] == [str(i) for i in range(0, 1300, 2)] and kept[0].text == "ABC"
    stats = step.stats
    assert (stats["total"].total, stats["forwarded"].total, stats["dropped"].total, stats["dropped_odd"].total) == (1300, 650, 650, 650)
    entry = step.ledger.to_dict()["steps"]["drop_odd"]["fr"]["s"]
    assert entry["read"][0] == 1300 and entry["kept"][0] == 650 and entry["dropped"]["odd"][0] == 650
