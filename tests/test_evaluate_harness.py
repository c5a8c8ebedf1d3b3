"""The real lm-evaluation-harness on a fournil checkpoint agrees with fournil's own task runner."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from evaluate_helpers import make_tokenizer

from fournil.evaluate.harness import run_harness
from fournil.evaluate.models import open_model
from fournil.evaluate.runner import run_task
from fournil.evaluate.tasks import SHIPPED_DIR, load_task, read_yaml
from fournil.model.io import save_model
from fournil.model.llama import Llama
from fournil.model.presets import PRESETS

pytest.importorskip("lm_eval")
pytest.importorskip("accelerate")
EXAMPLES = 12


def test_lm_eval_and_fournil_score_a_shipped_task_alike(tmp_path):
    docs = [json.loads(line) for line in (SHIPPED_DIR / "continuation_fr.jsonl").read_text().splitlines()[:40]]
    make_tokenizer(tmp_path / "tokenizer", [d["context"] + " " + " ".join(d["choices"]) for d in docs], vocab_size=400)
    torch.manual_seed(0)
    save_model(Llama(dataclasses.replace(PRESETS["tiny"], vocab_size=400)), tmp_path / "train" / "final")

    ours = run_task(open_model(tmp_path / "train" / "final", tmp_path / "tokenizer"), load_task("continuation_fr"),
                    num_fewshot=0, max_examples=EXAMPLES)["metrics"]
    theirs = run_harness(tmp_path / "train" / "final", ["continuation_fr"], tmp_path / "harness", tmp_path / "tokenizer",
                         num_fewshot=0, limit=EXAMPLES)["results"]["continuation_fr"]
    assert ours["acc"]["examples"] == EXAMPLES
    assert theirs["acc,none"] == pytest.approx(ours["acc"]["value"])
    assert theirs["acc_norm,none"] == pytest.approx(ours["acc_norm"]["value"])
    assert theirs["acc_stderr,none"] == pytest.approx(ours["acc"]["stderr"])
    assert read_yaml(SHIPPED_DIR / "continuation_fr.yaml")["dataset_kwargs"]["data_files"]["test"] == "continuation_fr.jsonl", \
        "the shipped file keeps its relative path; the harness gets an absolute copy"



def _closure(requirements: list[str]) -> set[str]:
    """Every distribution that installing `requirements` pulls in (their extras followed, markers evaluated)."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: set[tuple[str, str]] = set()
    todo = [(Requirement(r), "") for r in requirements]
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        for wanted in ("", *sorted(req.extras)):
            key = (canonicalize_name(req.name), wanted)
            if key in seen:
                continue
            seen.add(key)
            try:
                todo.extend((Requirement(r), wanted) for r in metadata.requires(req.name) or [])
            except metadata.PackageNotFoundError:
                pass
    return {name for name, _ in seen}


def test_the_eval_extra_installs_what_lm_evals_hf_model_imports():
    """`pip install 'fournil[eval]'` alone must let lm-eval's `hf` model load (it imports transformers and accelerate)."""
    import ast
    import tomllib
    from importlib import metadata
    from pathlib import Path

    import lm_eval.models.huggingface as hf_model
    from packaging.utils import canonicalize_name

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    installed = _closure(project["dependencies"] + project["optional-dependencies"]["eval"])
    tree = ast.parse(Path(hf_model.__file__).read_text())
    top = {(n.module if isinstance(n, ast.ImportFrom) else a.name).split(".")[0]
           for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom) and getattr(n, "level", 0) == 0
           for a in (n.names if isinstance(n, ast.Import) else [n])}
    providers = metadata.packages_distributions()
    needed = {canonicalize_name(d) for module in top - {"lm_eval", "__future__"} for d in providers.get(module, [])}
    assert {"transformers", "accelerate"} <= needed
    assert needed - installed == set()


def test_shipped_tasks_run_in_lm_eval_from_another_folder_in_bfloat16(tmp_path, monkeypatch):
    """lm-eval itself, with the shipped folder as include path, from a working folder that is not it (the
    relative data_files failed there); bfloat16 weights through fournil's --harness path."""
    docs = [json.loads(line) for line in (SHIPPED_DIR / "continuation_fr.jsonl").read_text().splitlines()[:40]]
    make_tokenizer(tmp_path / "tokenizer", [d["context"] + " " + " ".join(d["choices"]) for d in docs], vocab_size=400)
    torch.manual_seed(0)
    save_model(Llama(dataclasses.replace(PRESETS["tiny"], vocab_size=400)), tmp_path / "train" / "final")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    loaders = {p.stem: read_yaml(p).get("custom_dataset") for p in SHIPPED_DIR.glob("*.yaml")}
    assert {str(getattr(f, "name", f)) for f in loaders.values()} == {"local_data.load"}, "every shipped task loads its own data"
    names = ["continuation_fr", "minimal_pairs_de", "translation_en_fr"]  # one of each kind (all of them take minutes)
    summary = run_harness(tmp_path / "train" / "final", names, tmp_path / "harness", tmp_path / "tokenizer",
                          num_fewshot=None, limit=2, dtype="bfloat16")
    assert sorted(summary["results"]) == names and summary["dtype"] == "bfloat16"
    assert all(summary["n-samples"][n]["effective"] == 2 for n in names)


def test_harness_backends_and_dtypes_fail_in_one_line(tmp_path):
    from fournil.errors import FournilError
    from fournil.evaluate.command import harness_backend

    assert harness_backend("lm-eval") == "hf" and harness_backend("lm-eval:vllm") == "vllm"
    with pytest.raises(FournilError, match="lm-eval:MODEL"):
        harness_backend("lm-eval:")
    with pytest.raises(FournilError, match="float32, bfloat16, float16"):
        run_harness(tmp_path, ["continuation_fr"], tmp_path / "out", dtype="int3")
    with pytest.raises(FournilError, match="no model backend 'nope'"):
        run_harness(tmp_path, ["continuation_fr"], tmp_path / "out", model="nope")
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(FournilError, match=r"needs vllm, which is not installed: pip install 'lm-eval\[vllm\]'"):
            run_harness(tmp_path, ["continuation_fr"], tmp_path / "out", model="vllm")
