"""Code as a category: a source tree read one file a document, passed by language ID and the prose
quality rules, its indentation kept, its licence per source; the shipped Python sample."""

from __future__ import annotations

from fournil.corpus.documents import iter_documents
from fournil.recipe import parse_recipe
from fournil.runs import run_stage

from conftest import SAMPLE

CODE = SAMPLE / "code" / "python"


def test_a_source_tree_is_read_as_code_and_kept_whole(tmp_path, minimal_recipe_data):
    (tmp_path / "tree" / "sub").mkdir(parents=True)
    for name in ("heapq.py", "textwrap.py"):
        (tmp_path / "tree" / name).write_bytes((CODE / name).read_bytes())
    (tmp_path / "tree" / "sub" / "bisect.py").write_bytes((CODE / "bisect.py").read_bytes())
    (tmp_path / "tree" / "README.txt").write_text("not code: left out by the extension filter\n")
    data = {**minimal_recipe_data, "corpus": {"heldout_fraction": 0.0, "workers": 1}}
    data["sources"].append({"name": "code-python", "path": str(tmp_path / "tree"), "format": "code", "extensions": [".py"],
                            "lang": "en", "category": "code", "license": "PSF-2.0"})
    recipe = parse_recipe(data, tmp_path)
    assert [p.name for p in recipe.source_files(recipe.sources[-1])] == ["heapq.py", "bisect.py", "textwrap.py"]
    run_stage(recipe, tmp_path / "run", "corpus", log=lambda message: None)
    docs = {d["id"]: d for d in iter_documents(tmp_path / "run" / "corpus", "train", "en", "code-python")}
    assert sorted(docs) == ["code-python/heapq.py", "code-python/sub/bisect.py", "code-python/textwrap.py"]
    heapq = docs["code-python/heapq.py"]
    assert heapq["category"] == "code" and heapq["license"] == "PSF-2.0" and heapq["programming_language"] == "python"
    assert "\n    while pos > startpos:\n        parentpos = (pos - 1) >> 1\n" in heapq["text"]  # indentation kept
    assert len((CODE.parent.parent / "licenses" / "PSF-2.0.txt").read_text()) > 1000
