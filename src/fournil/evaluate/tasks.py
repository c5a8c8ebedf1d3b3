"""lm-evaluation-harness task YAML, read without lm-eval: the fields, the Jinja prompts, local data.

A task file names its data (`dataset_path: json` + `dataset_kwargs.data_files`, paths relative to
the YAML file), its splits, its prompt (`doc_to_text`, `doc_to_target`, `doc_to_choice`: a field
name, a Jinja template, a literal list or `!function module.name` from a Python file beside the
YAML), its `output_type` and `metric_list`. `include:` merges a base file under the task's own
fields, as lm-eval does. Tasks that read the Hugging Face Hub parse, but their data cannot be
fetched here: run them with `--harness lm-eval`.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml

from fournil.errors import FournilError

SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"  # package data: found by any install
OUTPUT_TYPES = ("multiple_choice", "loglikelihood", "loglikelihood_rolling", "generate_until")
_JINJA = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


@dataclass(frozen=True)
class FunctionRef:
    """`!function utils.process_docs`: a function in a Python file beside the task YAML."""

    name: str
    folder: Path

    def load(self):
        module_name, _, attr = self.name.rpartition(".")
        path = self.folder / f"{module_name.replace('.', '/')}.py"
        spec = importlib.util.spec_from_file_location(f"fournil_task_{module_name}", path)
        if spec is None or not path.is_file():
            raise FournilError(f"!function {self.name}: no file {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return getattr(module, attr)


def _loader(folder: Path) -> type[yaml.SafeLoader]:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!function", lambda loader, node: FunctionRef(loader.construct_scalar(node), folder))
    return Loader


def read_yaml(path: Path) -> dict[str, Any]:
    """A task file with its `include:` chain merged in (the including file wins)."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_loader(path.parent))  # noqa: S506 (SafeLoader subclass)
    except FileNotFoundError:
        raise FournilError(f"task {path}: no such file") from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise FournilError(f"task {path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise FournilError(f"task {path}: expected a mapping of fields (task, dataset_path, doc_to_text, ...)")
    include = data.pop("include", None)
    if include:
        base = read_yaml(path.parent / include)
        data = {**base, **data}
    return data


@dataclass
class Task:
    """One task: its merged YAML fields and the folder its relative paths start from."""

    name: str
    config: dict[str, Any]
    folder: Path
    skipped_lines: Counter = field(default_factory=Counter)

    @property
    def output_type(self) -> str:
        return self.config.get("output_type", "generate_until")

    @property
    def languages(self) -> list[str]:
        return list((self.config.get("metadata") or {}).get("languages") or [])

    @property
    def target_delimiter(self) -> str:
        return self.config.get("target_delimiter", " ")

    @property
    def fewshot_delimiter(self) -> str:
        return self.config.get("fewshot_delimiter", "\n\n")

    @property
    def metrics(self) -> list[dict[str, Any]]:
        """metric_list entries; a metric given as `!function utils.rouge1` goes by its function's name."""
        entries = [m if isinstance(m, dict) else {"metric": m} for m in self.config.get("metric_list") or []]
        return [{**m, "metric": m["metric"].name.rpartition(".")[2] if isinstance(m["metric"], FunctionRef) else str(m["metric"])}
                for m in entries]

    # --- data

    def _data_files(self) -> dict[str, list[Path]]:
        kwargs = self.config.get("dataset_kwargs") or {}
        files = kwargs.get("data_files", self.config.get("data_files"))
        if self.config.get("dataset_path") not in ("json", "jsonl") or files is None:
            raise FournilError(
                f"task {self.name}: reads {self.config.get('dataset_path')!r} from the Hugging Face Hub; fournil runs tasks "
                "offline: give local data (dataset_path: json, dataset_kwargs.data_files) or use --harness lm-eval")
        if not isinstance(files, dict):
            files = {"train": files}
        return {split: [self.folder / p for p in ([paths] if isinstance(paths, str) else paths)] for split, paths in files.items()}

    def docs(self, split: str) -> list[dict]:
        """Documents of a split, malformed lines skipped and counted in `skipped_lines`."""
        files = self._data_files()
        if split not in files:
            raise FournilError(f"task {self.name}: split {split!r} is not in data_files ({', '.join(files)})")
        docs: list[dict] = []
        for path in files[split]:
            try:
                text = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                raise FournilError(f"task {self.name}: data file {path} not found") from None
            except UnicodeDecodeError:
                raise FournilError(f"task {self.name}: {path} is not UTF-8 text") from None
            if path.suffix == ".json" and text.lstrip().startswith("["):
                docs.extend(json.loads(text))
                continue
            for line in text.splitlines():
                if not line.strip():
                    continue
                try:
                    doc = json.loads(line)
                except json.JSONDecodeError:
                    self.skipped_lines["malformed JSON"] += 1
                    continue
                if isinstance(doc, dict):
                    docs.append(doc)
                else:
                    self.skipped_lines["not an object"] += 1
        process = self.config.get("process_docs")
        return list(process.load()(docs)) if isinstance(process, FunctionRef) else docs

    def test_docs(self) -> list[dict]:
        split = self.config.get("test_split") or self.config.get("validation_split")
        if not split:
            raise FournilError(f"task {self.name}: names neither test_split nor validation_split")
        return self.docs(split)

    def fewshot_pool(self) -> list[dict]:
        """Documents to draw few-shot examples from: the few-shot, training or validation split, else the test split."""
        for key in ("fewshot_split", "training_split", "validation_split"):
            split = self.config.get(key)
            if split and split != self.config.get("test_split"):
                return self.docs(split)
        return self.test_docs()

    # --- prompts

    def _apply(self, spec: Any, doc: dict) -> Any:
        if isinstance(spec, FunctionRef):
            return spec.load()(doc)
        if isinstance(spec, str):
            if spec in doc:
                return doc[spec]
            try:
                return _JINJA.from_string(spec).render(**doc)
            except jinja2.TemplateError as error:
                raise FournilError(f"task {self.name}: template {spec!r} fails on a document ({error})") from None
        return spec

    def text(self, doc: dict) -> str:
        return str(self._apply(self.config.get("doc_to_text", ""), doc))

    def choices(self, doc: dict) -> list[str]:
        spec = self.config.get("doc_to_choice")
        if spec is None:
            raise FournilError(f"task {self.name}: multiple_choice needs doc_to_choice")
        value = self._apply(spec, doc)
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, str):
            value = ast.literal_eval(value)
        return [str(c) for c in value]

    def target(self, doc: dict) -> Any:
        """The gold answer: an index (or indices) into the choices, or the reference text(s)."""
        value = self._apply(self.config.get("doc_to_target"), doc)
        if self.output_type == "multiple_choice":
            if isinstance(value, str):
                value = int(value) if value.strip().isdigit() else self.choices(doc).index(value)
            return value
        return value

    def target_text(self, doc: dict) -> str:
        """The answer as text, as a few-shot example shows it."""
        gold = self.target(doc)
        if self.output_type == "multiple_choice":
            return self.choices(doc)[gold[0] if isinstance(gold, list) else gold]
        return str(gold[0] if isinstance(gold, list) else gold)

    def prompt(self, doc: dict, shots: list[dict]) -> str:
        """Description, few-shot examples and the question, as lm-eval lays them out."""
        description = self.config.get("description") or ""
        if "{" in description:  # lm-eval renders the description as a template too
            description = str(self._apply(description, doc))
        examples = "".join(self.text(s) + self.target_delimiter + self.target_text(s) + self.fewshot_delimiter for s in shots)
        return description + examples + self.text(doc)

    def sample_shots(self, docs: list[dict], k: int, seed: int) -> list[list[dict]]:
        """k few-shot examples per document, seeded; never the document itself."""
        if k == 0:
            return [[] for _ in docs]
        pool = self.fewshot_pool()
        sampler = (self.config.get("fewshot_config") or {}).get("sampler", "default")
        rnd = random.Random(seed)
        shots = []
        for doc in docs:
            candidates = [d for d in pool if d != doc]  # as lm-eval: a document is never its own example
            if len(candidates) < k:
                raise FournilError(f"task {self.name}: {k} few-shot examples asked, only {len(candidates)} available")
            shots.append(candidates[:k] if sampler == "first_n" else rnd.sample(candidates, k))
        return shots


def task_file(spec: str, base_dir: Path | None = None) -> Path | None:
    """The YAML file a task spec names: a path (relative to base_dir), or a shipped task's name."""
    path = Path(spec)
    if base_dir is not None and not path.is_absolute() and (base_dir / path).is_file():
        return base_dir / path
    if not path.suffix and (SHIPPED_DIR / f"{spec}.yaml").is_file():
        return SHIPPED_DIR / f"{spec}.yaml"
    return path if path.is_file() else None


def load_task(spec: str, base_dir: Path | None = None) -> Task:
    """A task by shipped name (fournil/evaluate/shipped/<name>.yaml) or by path to a task YAML."""
    path = task_file(spec, base_dir)
    if path is None:
        shipped = ", ".join(sorted(p.stem for p in SHIPPED_DIR.glob("*.yaml")))
        raise FournilError(f"task {spec!r}: no such task file, and not a shipped task ({shipped})")
    config = read_yaml(path)
    output_type = config.get("output_type", "generate_until")
    if output_type not in OUTPUT_TYPES:
        raise FournilError(f"task {path}: output_type {output_type!r} is not one of {', '.join(OUTPUT_TYPES)}")
    return Task(name=str(config.get("task") or path.stem), config=config, folder=path.parent)
