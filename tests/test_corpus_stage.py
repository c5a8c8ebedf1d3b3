"""The corpus stage end to end on a small messy recipe built from the shipped sample."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pytest
import zstandard

from fournil.corpus.documents import iter_documents
from fournil.corpus.pipeline import is_heldout
from fournil.recipe import parse_recipe
from fournil.runs import run_stage

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


def _load(path: Path) -> list[dict]:
    with open(path, "rb") as f:
        return [json.loads(line) for line in io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f), encoding="utf-8")]


def _zst(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(zstandard.ZstdCompressor().compress(b"".join(line + b"\n" for line in lines)))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    fr = _load(SAMPLE / "fr" / "gnome-user-docs.jsonl.zst")[:60]
    en = _load(SAMPLE / "en" / "gnome-user-docs.jsonl.zst")
    en_by_id = {d["id"]: d for d in en}
    # a French document with an untranslated English passage (its English twin's text)
    mixed = next(d for d in fr[3:] if d["id"] in en_by_id and len(en_by_id[d["id"]]["text"]) > 1200 and len(d["text"]) > 1200)
    mixed["text"] = mixed["text"] + "\n\n" + en_by_id[mixed["id"]]["text"]
    en_source = [d for d in en if d["id"] != mixed["id"]]  # the routed passage has no twin in English
    # PII inside a document that passes the filters
    fr[1]["text"] = fr[1]["text"].replace("\n\n", "\n\nÉcrivez à jean.dupont@exemple.fr ou au +33 1 23 45 67 89 depuis 8.8.8.8.\n\n", 1)
    (root / "fr").mkdir()
    _zst(root / "fr" / "docs.jsonl.zst",
         [json.dumps(d, ensure_ascii=False).encode() for d in fr]
         + [b'{"id": "broken", "text": ', b'\xff\xfe not utf-8', b'{"id": "no-text"}', b"[1, 2]"])
    (root / "fr" / "empty.jsonl").write_bytes(b"")
    (root / "fr" / "binary.jsonl").write_bytes(b"\x00\x01\x02" * 100)
    good = zstandard.ZstdCompressor().compress(b"".join(json.dumps(d).encode() + b"\n" for d in fr[:5]))
    (root / "fr" / "truncated.jsonl.zst").write_bytes(good[: len(good) // 2])
    (root / "mirror").mkdir()
    with gzip.open(root / "mirror" / "copy.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(json.dumps({**fr[2], "id": "mirror-copy"}, ensure_ascii=False) + "\n")
    (root / "en").mkdir()
    _zst(root / "en" / "docs.jsonl.zst", [json.dumps(d).encode() for d in en_source[:60]])
    (root / "en" / "notes.txt").write_text(en_source[70]["text"], encoding="utf-8")
    # an evaluation set that quotes one English document
    quoted = " ".join(en_source[3]["text"].split()[10:40])
    (root / "eval.tsv").write_text(f"source\tdoc\ten\tfr\nx\t1\t{quoted}\tbonjour\n", encoding="utf-8")
    recipe = parse_recipe({
        "name": "t", "seed": 7, "languages": {"fr": 0.5, "en": 0.5},
        "sources": [
            {"name": "fr-docs", "path": "fr", "lang": "fr", "license": "CC-BY-SA-3.0"},
            {"name": "fr-mirror", "path": "mirror/copy.jsonl.gz", "lang": "fr", "license": "CC-BY-SA-3.0", "priority": 5},
            {"name": "en-docs", "path": "en", "lang": "en", "license": "CC-BY-SA-3.0"},
        ],
        "corpus": {"heldout_fraction": 0.2, "decontaminate": ["eval.tsv"], "workers": 2},
    }, root)
    manifest = run_stage(recipe, root / "run", "corpus", log=lambda m: None)
    return {"dir": root / "run" / "corpus", "figures": manifest["figures"], "mixed": mixed, "fr": fr, "en": en, "eval_id": en_source[3]["id"],
            "stats": json.loads((root / "run" / "corpus" / "stats.json").read_text())}


def _step(figures: dict, name: str) -> dict:
    return next(s for s in figures["steps"] if s["step"] == name)


def _all(out: Path) -> list[dict]:
    return list(iter_documents(out, "train")) + list(iter_documents(out, "heldout"))


def test_every_step_balances_and_bad_input_is_counted(run):
    for step in run["figures"]["steps"]:
        dropped = sum(d["documents"] for d in step["dropped"].values())
        assert step["documents_read"] == step["documents_kept"] + dropped, step["step"]
        for lang, figures in step["per_language"].items():
            assert figures["documents_read"] == figures["documents_kept"] + sum(d["documents"] for d in figures["dropped"].values())
    read = _step(run["figures"], "read")
    assert {k: v["documents"] for k, v in read["dropped"].items()} == {
        "invalid_json": 2, "invalid_utf8": 1, "missing_text_field": 1, "empty_file": 1, "nul_byte": 1, "truncated_file": 1}
    # the next step reads what the previous kept, plus what it created
    steps = run["figures"]["steps"]
    for before, after in zip(steps, steps[1:]):
        created = sum(c["documents"] for c in before["created"].values())
        assert after["documents_read"] == before["documents_kept"] + created, after["step"]
    kept = _step(run["figures"], "dedup_minhash")["documents_kept"]
    per_language = run["figures"]["per_language"]
    assert kept == sum(f["documents"] + f["heldout_documents"] for f in per_language.values()) == len(_all(run["dir"]))


def test_english_passage_is_routed_to_english_with_the_same_key(run):
    docs = {d["id"]: d for d in _all(run["dir"])}
    routed_id = run["mixed"]["id"] + "#en"
    assert routed_id in docs and docs[routed_id]["lang"] == "en" and docs[routed_id]["routed_from"] == "fr"
    assert _step(run["figures"], "language_id")["created"]["routed_from_fr"]["documents"] >= 1
    twin = next(d for d in run["en"] if d["id"] == run["mixed"]["id"])
    longest = max(twin["text"].split("\n\n"), key=len)
    assert longest in docs[routed_id]["text"]
    french = docs.get(run["mixed"]["id"])
    if french is not None:  # the French part may be filtered, but never keeps the English passage
        assert french["lang"] == "fr" and longest not in french["text"]


def test_heldout_split_is_by_key_in_every_language(run):
    out = run["dir"]
    for split in ("train", "heldout"):
        for doc in iter_documents(out, split):
            assert is_heldout(doc["id"], 7, 0.2) == (split == "heldout")
    heldout_keys = {d["id"].split("#")[0] for d in iter_documents(out, "heldout")}
    train_keys = {d["id"].split("#")[0] for d in iter_documents(out, "train")}
    assert heldout_keys and not heldout_keys & train_keys


def test_duplicate_keeps_the_higher_priority_copy_and_its_cluster_size(run):
    docs = _all(run["dir"])
    copy = next(d for d in docs if d["id"] == "mirror-copy")
    assert copy["source"] == "fr-mirror" and copy["minhash_cluster_size"] >= 2
    assert (run["fr"][2]["id"], "fr") not in {(d["id"], d["lang"]) for d in docs}
    assert _step(run["figures"], "dedup_exact")["dropped"]["exact_duplicate"]["documents"] >= 1


def test_pii_is_replaced_and_counted(run):
    text = next(d["text"] for d in _all(run["dir"]) if d["id"] == run["fr"][1]["id"] and d["lang"] == "fr")
    assert "jean.dupont@exemple.fr" not in text and "<EMAIL>" in text
    assert "<PHONE_NUMBER>" in text and "<IP_ADDRESS>" in text
    counts = _step(run["figures"], "pii")["counts"]
    assert counts["email"] >= 1 and counts["phone"] >= 1 and counts["ip"] >= 1


def test_decontamination_names_the_benchmark(run):
    dropped = _step(run["figures"], "decontaminate")["dropped"]
    assert dropped["contaminated_eval"]["documents"] >= 1
    assert (run["eval_id"], "en") not in {(d["id"], d["lang"]) for d in _all(run["dir"])}
    assert run["stats"]["examples"]["decontaminate"]["contaminated_eval"][0]["id"] == run["eval_id"]


def test_settings_origin_is_reported(run):
    assert run["stats"]["settings"]["fr"]["origin"] == "FineWeb-2 fra_Latn"
    assert run["figures"]["per_language"]["fr"]["documents"] > 0
