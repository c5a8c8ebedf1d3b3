"""The real lm-evaluation-harness on a model, when lm-eval is installed (`pip install 'fournil[eval]'`).

A fournil checkpoint is exported to a transformers folder first (`fournil.model.hf.export_hf`), so
the harness runs exactly what users of the release will load; a transformers folder runs as is.
Tasks are lm-eval's own names (french_bench, belebele_fra_Latn, … which fetch their data from the
Hub) or local task files: fournil's shipped tasks by name (they run from their own folder, as with
`lm_eval --include_path`) or any task YAML by path (copied with its `data_files` made absolute, since
lm-eval reads them relative to the working folder). The backend is any lm-eval model that loads a
transformers folder (`hf`, or `vllm`, `sglang` when installed), at float32, bfloat16 or float16; a
chat model is prompted through its tokenizer's chat template (lm-eval's `--apply_chat_template`).

The evaluate stage runs the recipe's `evaluate.harness_tasks` here too, offline: `cached_tasks` keeps
those whose data loads from the local Hugging Face datasets cache and gives a reason for each other,
and `task_results` turns lm-eval's scores into the entries of fournil's results.json.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from fournil.errors import FournilError
from fournil.evaluate.models import find_tokenizer_dir, is_transformers_folder
from fournil.evaluate.tasks import SHIPPED_DIR, FunctionRef, read_yaml, task_file

DTYPES = ("float32", "bfloat16", "float16")
LANGUAGE_WORDS = {"eng": "en", "fra": "fr", "deu": "de", "spa": "es", "ita": "it", "por": "pt", "nld": "nl",
                  "english": "en", "french": "fr", "german": "de", "spanish": "es", "italian": "it", "portuguese": "pt",
                  **{code: code for code in ("en", "fr", "de", "es", "it", "pt", "nl")}}  # a task name's part → its language


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


def offline() -> None:
    """No network at run time, unless the user's environment asks for it: the Hub is off for huggingface_hub
    and datasets, also when they were imported before (they read the variables once, at import)."""
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(name, "1")
    if os.environ["HF_HUB_OFFLINE"].upper() not in ("1", "ON", "YES", "TRUE"):
        return
    for module in ("huggingface_hub.constants", "datasets.config"):
        if module in sys.modules and hasattr(sys.modules[module], "HF_HUB_OFFLINE"):
            sys.modules[module].HF_HUB_OFFLINE = True


def datasets_cache() -> str:
    """The datasets cache lm-eval's tasks load from (HF_DATASETS_CACHE, else HF_HOME/datasets)."""
    import datasets

    return str(datasets.config.HF_DATASETS_CACHE)


def cached_tasks(names: list[str], task_manager) -> tuple[list[str], dict[str, str]]:  # noqa: ANN001
    """The lm-eval tasks whose data loads here, offline, and a one-line reason for each other one. A name lm-eval
    does not know is the recipe's mistake, not a missing cache: an error."""
    unknown = [name for name in names if name not in task_manager.all_tasks]
    if unknown:
        raise FournilError(f"evaluate.harness_tasks: lm-eval {getattr(sys.modules.get('lm_eval'), '__version__', '')} has no task "
                           f"{', '.join(map(repr, unknown))} (names as `lm_eval --tasks list` prints them, e.g. xnli_fr, belebele_fra_Latn)")
    ready, skipped = [], {}
    for name in names:
        try:
            task_manager.load([name])
        except Exception as error:  # noqa: BLE001 - datasets and lm-eval raise many kinds for data that is not there offline
            first = (str(error).strip().splitlines() or [""])[0][:160]
            skipped[name] = f"its data is not in the local datasets cache {datasets_cache()} ({type(error).__name__}: {first})"
        else:
            ready.append(name)
    return ready, skipped


def prepare(names: list[str], log=print) -> tuple[list[str], dict[str, str], Any]:
    """The evaluate stage's harness tasks: (those to run, reason for each skipped one, lm-eval's task index).
    Without lm-eval installed every one is skipped; each skip is one line of the log."""
    if not names:
        return [], {}, None
    offline()
    try:
        from lm_eval.tasks import TaskManager
    except ImportError:
        ready, skipped, manager = [], {name: "lm-eval is not installed (pip install 'fournil[eval]')" for name in names}, None
    else:
        manager = TaskManager()
        ready, skipped = cached_tasks(names, manager)
    for name, why in skipped.items():
        log(f"[evaluate] lm-eval task {name} skipped: {why}")
    return ready, skipped, manager


def task_languages(name: str, languages: list[str]) -> list[str]:
    """The language of an lm-eval task, read from its name (xnli_fr, belebele_fra_Latn, french_bench_arc); none when it names none."""
    for part in re.split(r"[_\-]", name.lower()):
        lang = part if part in languages else LANGUAGE_WORDS.get(part)
        if lang:
            return [lang]
    return []


def _figure(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def task_results(summary: dict[str, Any], languages: list[str]) -> dict[str, dict[str, Any]]:
    """lm-eval's scores as fournil task entries (results.json's `tasks`): metrics {value, stderr, examples} by
    lm-eval's metric name (with its filter when not `none`), chance, shots, headline and the dataset."""
    from fournil.evaluate.suite import main_metric

    entries = {}
    for name, scores in summary["results"].items():
        meta = summary["tasks_meta"].get(name, {})
        examples = (summary["n-samples"].get(name) or {}).get("effective")
        metrics: dict[str, Any] = {}
        for key, value in scores.items():
            metric, _, filtered = key.partition(",")
            if not filtered or metric.endswith("_stderr") or _figure(value) is None:
                continue
            label = metric if filtered == "none" else f"{metric}_{filtered}"
            metrics[label] = {"value": _figure(value), "stderr": _figure(scores.get(f"{metric}_stderr,{filtered}")), "examples": examples}
        if meta.get("chance") is not None:
            metrics["chance"] = meta["chance"]
        entry = {"task": name, "harness": "lm-eval", "output_type": meta.get("output_type"), "languages": task_languages(name, languages),
                 "num_fewshot": meta.get("num_fewshot"), "examples": examples, "metrics": metrics, "dataset": meta.get("dataset"),
                 "samples": meta.get("samples", [])}
        entry["headline"] = main_metric(entry) or next((m for m, v in metrics.items() if isinstance(v, dict)), None)
        entries[name] = entry
    return entries


def _tasks_meta(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per task: output type, shots, dataset, chance (a multiple-choice task scored by lm-eval's own acc: the mean of
    1 / choices over its documents) and the first three generations, from lm-eval's configs and logged samples."""
    meta = {}
    for name, config in (results.get("configs") or {}).items():
        rows = (results.get("samples") or {}).get(name) or []
        rows = [r for r in rows if r.get("filter") == rows[0].get("filter")]  # one row per document and filter: the first filter's
        chance = None
        if config.get("output_type") == "multiple_choice" and not config.get("process_results") and rows:
            chance = sum(1 / len(r["arguments"]) for r in rows) / len(rows)
        split = config.get("test_split") or config.get("validation_split")
        generations = [{"target": str(r.get("target")), "answer": str((r.get("filtered_resps") or [""])[0])}
                       for r in rows[:3]] if config.get("output_type") == "generate_until" else []
        meta[name] = {"output_type": config.get("output_type"), "num_fewshot": (results.get("n-shot") or {}).get(name, config.get("num_fewshot")),
                      "dataset": {"path": config.get("dataset_path"), "name": config.get("dataset_name"), "split": split},
                      "chance": chance, "samples": generations}
    return meta


def run_harness(model_dir: Path, tasks: list[str], out: Path, tokenizer_dir: Path | None = None, num_fewshot: int | None = None,
                limit: int | None = None, batch_size: int = 8, device: str = "cpu", model: str = "hf",
                dtype: str = "float32", chat: bool = False, task_manager=None) -> dict[str, Any]:  # noqa: ANN001
    """Run lm-eval's `simple_evaluate` with its MODEL backend at `dtype` (prompts through the model's chat template
    when `chat`); write and return `harness.json` (lm-eval's results per task)."""
    offline()  # before lm-eval imports datasets: Hub tasks read the local cache or fail fast
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
        if chat and not _chat_template(hf_dir):
            raise FournilError(f"{model_dir}: its tokenizer_config.json has no chat_template, which --chat needs (a fournil tokenizer has one)")
        include = Path(tmp) / "tasks"
        include.mkdir()
        names, folders = _local_tasks(tasks, include)
        if folders:  # lm-eval's own index, and these folders
            from lm_eval.tasks import TaskManager

            task_manager = TaskManager(include_path=[str(f) for f in folders])
        extra = {"task_manager": task_manager} if task_manager is not None else {}
        results = lm_eval.simple_evaluate(model=model, model_args=f"pretrained={hf_dir},dtype={dtype}", tasks=names,
                                          num_fewshot=num_fewshot, limit=limit, batch_size=batch_size, device=device,
                                          apply_chat_template=chat, **extra)
    results = results or {}
    summary = {"harness": "lm-eval", "model": model, "dtype": dtype, "version": getattr(lm_eval, "__version__", None), "tasks": names,
               "chat_template": chat, "results": results.get("results", {}), "n-samples": results.get("n-samples", {}),
               "tasks_meta": _tasks_meta(results)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "harness.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False, default=str))
    return summary


def _chat_template(hf_dir: Path) -> str | None:
    try:
        return json.loads((hf_dir / "tokenizer_config.json").read_text(encoding="utf-8")).get("chat_template")
    except (OSError, json.JSONDecodeError):
        return None
