"""The real lm-evaluation-harness on a model, when lm-eval is installed (`pip install 'fournil[eval]'`).

A fournil checkpoint is exported to a transformers folder first (`fournil.model.hf.export_hf`), so
the harness runs exactly what users of the release will load; a transformers folder runs as is.
Tasks are lm-eval's own names (french_bench, belebele_fra_Latn, … which fetch their data from the
Hub) or local task files: fournil's shipped tasks by name (they run from their own folder, as with
`lm_eval --include_path`) or any task YAML by path (copied with its `data_files` made absolute, since
lm-eval reads them relative to the working folder). The backend is any lm-eval model that loads a
transformers folder (`hf`, or `vllm`, `sglang` when installed), at float32, bfloat16 or float16.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from fournil.errors import FournilError
from fournil.evaluate.models import find_tokenizer_dir, is_transformers_folder
from fournil.evaluate.tasks import SHIPPED_DIR, FunctionRef, read_yaml, task_file

DTYPES = ("float32", "bfloat16", "float16")


def _function_refs(value: Any) -> list[FunctionRef]:
    if isinstance(value, FunctionRef):
        return [value]
    if isinstance(value, dict):
        return [ref for v in value.values() for ref in _function_refs(v)]
    if isinstance(value, list):
        return [ref for v in value for ref in _function_refs(v)]
    return []


def _dumper() -> type[yaml.SafeDumper]:
    class Dumper(yaml.SafeDumper):
        pass

    Dumper.add_representer(FunctionRef, lambda dumper, ref: dumper.represent_scalar("!function", ref.name))
    return Dumper


def _local_tasks(tasks: list[str], include_dir: Path) -> tuple[list[str], list[Path]]:
    """Task names for lm-eval and the folders to include. The shipped tasks run from their own folder (they
    load their data beside themselves); another task file is copied into include_dir with its `data_files`
    made absolute and the Python files its `!function`s name beside it."""
    names, folders = [], []
    for spec in tasks:
        path = task_file(spec, Path.cwd())
        if path is None:
            names.append(spec)  # one of lm-eval's registered tasks
            continue
        config = read_yaml(path)
        name = str(config.get("task") or path.stem)
        names.append(name)
        if path.parent == SHIPPED_DIR:
            folders.append(SHIPPED_DIR)
            continue
        files = (config.get("dataset_kwargs") or {}).get("data_files")
        if isinstance(files, dict):
            config["dataset_kwargs"]["data_files"] = {k: str((path.parent / v).resolve()) for k, v in files.items()}
        elif isinstance(files, str):
            config["dataset_kwargs"]["data_files"] = str((path.parent / files).resolve())
        for ref in _function_refs(config):
            module = ref.name.rpartition(".")[0].replace(".", "/") + ".py"
            if (ref.folder / module).is_file():
                shutil.copyfile(ref.folder / module, include_dir / module)
        (include_dir / f"{name}.yaml").write_text(yaml.dump(config, Dumper=_dumper(), allow_unicode=True), encoding="utf-8")
        folders.append(include_dir)
    return names, sorted(set(folders))


def _backend(model: str):
    """lm-eval's model class for MODEL (hf, vllm, sglang, ...), or a one-line error saying what to install."""
    from lm_eval.api.registry import get_model

    try:
        return get_model(model)
    except (ImportError, ModuleNotFoundError) as error:
        missing = getattr(error, "name", None) or str(error)
        raise FournilError(f"--harness lm-eval:{model} needs {missing}, which is not installed: pip install 'lm-eval[{model}]'") from None
    except (KeyError, ValueError):
        raise FournilError(f"--harness lm-eval:{model}: lm-eval has no model backend {model!r} (e.g. hf, vllm, sglang)") from None


def run_harness(model_dir: Path, tasks: list[str], out: Path, tokenizer_dir: Path | None = None, num_fewshot: int | None = None,
                limit: int | None = None, batch_size: int = 8, device: str = "cpu", model: str = "hf",
                dtype: str = "float32") -> dict[str, Any]:
    """Run lm-eval's `simple_evaluate` with its MODEL backend at `dtype`; write and return `harness.json`
    (lm-eval's results per task)."""
    try:
        import lm_eval
    except ImportError:
        raise FournilError("--harness lm-eval needs lm-evaluation-harness, which is not installed: pip install 'fournil[eval]'") from None
    if not tasks:
        raise FournilError("--harness lm-eval needs --tasks, e.g. --tasks french_bench or --tasks belebele_fra_Latn,xnli_fr")
    if dtype not in DTYPES:
        raise FournilError(f"--dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    _backend(model)
    with tempfile.TemporaryDirectory() as tmp:
        hf_dir = Path(model_dir)
        if not is_transformers_folder(hf_dir):
            from fournil.model.hf import export_hf

            hf_dir = Path(tmp) / "hf"
            export_hf(Path(model_dir), find_tokenizer_dir(Path(model_dir), tokenizer_dir), hf_dir)
        include = Path(tmp) / "tasks"
        include.mkdir()
        names, folders = _local_tasks(tasks, include)
        extra: dict[str, Any] = {}
        if folders:
            from lm_eval.tasks import TaskManager

            extra["task_manager"] = TaskManager(include_path=[str(f) for f in folders])
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no network at run time: Hub tasks fail fast, local ones run
        results = lm_eval.simple_evaluate(model=model, model_args=f"pretrained={hf_dir},dtype={dtype}", tasks=names,
                                          num_fewshot=num_fewshot, limit=limit, batch_size=batch_size, device=device, **extra)
    summary = {"harness": "lm-eval", "model": model, "dtype": dtype, "version": getattr(lm_eval, "__version__", None), "tasks": names,
               "results": (results or {}).get("results", {}), "n-samples": (results or {}).get("n-samples", {})}
    out.mkdir(parents=True, exist_ok=True)
    (out / "harness.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False, default=str))
    return summary
