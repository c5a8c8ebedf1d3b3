"""The recipe: one YAML file that describes a whole bake, validated before any work starts.

Paths in a recipe are relative to the recipe file's folder, so a recipe and its data move together.
Every problem is reported at once, one line per field, with the value given and what is allowed.
"""

from __future__ import annotations

import copy
import glob
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from fournil.corpus.config import CorpusConfig
from fournil.errors import FournilError
from fournil.evaluate.config import EvaluateConfig
from fournil.instruct.config import RecipeInstruct
from fournil.mixture.config import MixtureConfig
from fournil.model.config import ModelSection
from fournil.plan_config import PlanConfig
from fournil.proxy import ProxyRecord
from fournil.release.config import ReleaseConfig
from fournil.schema import Section
from fournil.sft.config import SftConfig
from fournil.tokenizer.config import TokenizerConfig
from fournil.train.config import TrainConfig

LANG_CODE = re.compile(r"^[a-z]{2,3}(_[A-Za-z]{4})?$")  # ISO 639-1/3, optional script (e.g. srp_Cyrl)
SOURCE_FORMATS = ("auto", "text", "jsonl", "parquet", "html", "code")


class Source(Section):
    """One body of raw text: where it is, its language, category and licence."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    path: str
    lang: str
    category: str = "general"
    license: str
    weight: float = Field(1.0, ge=0)
    priority: int = Field(0, description="on duplicates across sources, the copy from the highest priority is kept")
    format: Literal["auto", "text", "jsonl", "parquet", "html", "code"] = Field(
        "auto", description="code: a source tree, one document per file, its programming language from the extension")
    text_field: str = "text"
    extensions: list[str] = Field(default_factory=list, description="with a folder, only the files whose names end so, e.g. [.py]")


class ParallelSource(Section):
    """Aligned translation pairs (TSV or JSONL) between two recipe languages."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    path: str
    langs: tuple[str, str]
    license: str


# Which executor runs a stage's tasks, on how many workers: the same bytes whatever they are (tested), so
# changing them reruns nothing, and an interrupted stage resumes under the new ones. Not corpus.tasks: it
# says how the work is split, and an interrupted pass 1 resumes only under the same split.
RUN_ONLY = {"corpus": ("workers", "executor", "executor_options"), "mixture": ("workers", "executor", "executor_options")}


class Recipe(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="names the run folder runs/<name>/")
    description: str = ""
    seed: int = 1234
    languages: dict[str, float] = Field(description="language code → target share of training tokens; shares sum to 1")
    sources: list[Source] = Field(min_length=1)
    parallel: list[ParallelSource] = Field(default_factory=list)
    corpus: CorpusConfig = CorpusConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()
    mixture: MixtureConfig = MixtureConfig()
    model: ModelSection = ModelSection()
    train: TrainConfig = TrainConfig()
    instruct: RecipeInstruct | None = Field(None, description="self-instruct settings for `fournil instruct generate RECIPE` (no stage: "
                                                             "its examples reach sft through sft.sources)")
    sft: SftConfig | None = Field(None, description="instruction tuning after pretraining; without it the sft stage does nothing")
    evaluate: EvaluateConfig = EvaluateConfig()
    release: ReleaseConfig = ReleaseConfig()
    plan: PlanConfig = PlanConfig()
    proxy: ProxyRecord | None = Field(None, description="set by --proxy: the recipe this proxies and what was shrunk")
    base_dir: Path = Field(Path("."), exclude=True, description="folder that relative paths start from")

    @field_validator("languages")
    @classmethod
    def _shares(cls, languages: dict[str, float]) -> dict[str, float]:
        if not languages:
            raise ValueError("name at least one language, e.g. {fr: 0.5, en: 0.5}")
        bad = [code for code in languages if not LANG_CODE.match(code)]
        if bad:
            raise ValueError(f"{', '.join(bad)}: not ISO 639 codes (two or three lower-case letters, e.g. fr, por)")
        if any(share < 0 for share in languages.values()):
            raise ValueError("shares must be ≥ 0")
        total = sum(languages.values())
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"shares sum to {total:g}; they must sum to 1")
        return languages

    @model_validator(mode="after")
    def _consistent(self) -> Recipe:
        problems = []
        for i, source in enumerate(self.sources):
            if source.lang not in self.languages:
                problems.append(f"sources.{i}.lang = {source.lang!r}: not among the recipe's languages {sorted(self.languages)}")
        for i, pair in enumerate(self.parallel):
            for lang in pair.langs:
                if lang not in self.languages:
                    problems.append(f"parallel.{i}.langs: {lang!r} is not among the recipe's languages {sorted(self.languages)}")
        for i, source in enumerate(self.sft.sources if self.sft else []):
            if source.lang not in self.languages:
                problems.append(f"sft.sources.{i}.lang = {source.lang!r}: not among the recipe's languages {sorted(self.languages)}")
        for lang in (self.instruct.languages or {}) if self.instruct else {}:
            if lang not in self.languages:
                problems.append(f"instruct.languages: {lang!r} is not among the recipe's languages {sorted(self.languages)}")
        names = [s.name for s in self.sources]
        for name in sorted({n for n in names if names.count(n) > 1}):
            problems.append(f"sources: the name {name!r} is used twice; each source needs its own name")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def resolve(self, path: str | Path) -> Path:
        """A recipe path, made absolute against the recipe's folder."""
        path = Path(path).expanduser()
        return path if path.is_absolute() else (self.base_dir / path)

    def source_files(self, source: Source) -> list[Path]:
        """The files a source names: a file, a folder (all files under it) or a glob."""
        path = self.resolve(source.path)
        if path.is_dir():
            return sorted(p for p in path.rglob("*") if p.is_file() and (not source.extensions or p.name.endswith(tuple(source.extensions))))
        if any(ch in source.path for ch in "*?["):
            return sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        return [path] if path.is_file() else []

    @property
    def language_codes(self) -> list[str]:
        """The languages without their shares: all the corpus and tokenizer stages read of them, so a
        change of shares alone (a ratio sweep) reuses their work."""
        return list(self.languages)

    def fingerprint_view(self) -> dict[str, Any]:
        """The recipe as plain data, paths made absolute, for fingerprints and manifests; without the
        fields that say only how a stage's tasks run (RUN_ONLY), which never change what they make."""
        data = self.model_dump(mode="json")
        data["language_codes"] = self.language_codes
        for section, fields in RUN_ONLY.items():
            for name in fields:
                data[section].pop(name)
        for key in ("sources", "parallel"):
            for item in data[key]:
                item["path"] = str(self.resolve(item["path"]))
        if data["sft"]:
            for item in data["sft"]["sources"]:
                item["path"] = str(self.resolve(item["path"]))
            if data["sft"]["init_from"]:
                data["sft"]["init_from"] = str(self.resolve(data["sft"]["init_from"]))
        return data


def _format_errors(error: ValidationError, data: dict) -> list[str]:
    lines = []
    for err in error.errors():
        where = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see docs/recipe.md)"
        if err["type"] == "missing":
            lines.append(f"{where}: missing (required)")
            continue
        if "\n" in msg:  # several problems found by one validator
            lines.extend(msg.splitlines())
            continue
        value = err.get("input")
        shown = repr(value) if not isinstance(value, dict | list) else _short(value)
        lines.append(f"{where} = {shown}: {msg}" if where else msg)
    return lines


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `--set a.b.c=value` overrides; the value is read as YAML (numbers, lists, booleans)."""
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise FournilError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.max_steps=50")
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            if isinstance(node, list):
                try:
                    node = node[int(part)]
                except (ValueError, IndexError):
                    raise FournilError(f"--set {key}: {part!r} is not an index of that list") from None
                continue
            node = node.setdefault(part, {})
            if not isinstance(node, dict | list):
                raise FournilError(f"--set {key}: {part!r} is a value, not a section")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        if isinstance(node, list):
            try:
                node[int(parts[-1])] = value
            except (ValueError, IndexError):
                raise FournilError(f"--set {key}: {parts[-1]!r} is not an index of that list") from None
        else:
            node[parts[-1]] = value
    return data


def parse_recipe(data: Any, base_dir: Path, origin: str = "recipe", require_sft_data: bool = True) -> Recipe:
    """Validate plain data into a Recipe, or raise a FournilError listing every problem. Without
    `require_sft_data` (self-instruct, which writes them), sft.sources may name files not there yet."""
    if not isinstance(data, dict):
        raise FournilError(f"{origin}: expected a mapping of sections (name, languages, sources, ...), got {type(data).__name__}")
    try:
        recipe = Recipe.model_validate({**data, "base_dir": base_dir})
    except ValidationError as error:
        lines = _format_errors(error, data)
        raise FournilError(f"{origin}: {len(lines)} problem{'s' * (len(lines) > 1)}:\n  " + "\n  ".join(lines)) from None
    missing = [
        f"sources.{i}.path = {s.path!r}: no such file or folder (paths are relative to {base_dir})"
        for i, s in enumerate(recipe.sources)
        if not recipe.source_files(s)
    ] + [
        f"parallel.{i}.path = {p.path!r}: no such file (paths are relative to {base_dir})"
        for i, p in enumerate(recipe.parallel)
        if not recipe.resolve(p.path).is_file()
    ] + [
        f"sft.sources.{i}.path = {s.path!r}: no such file (paths are relative to {base_dir}){_made_by_instruct(recipe, s.path)}"
        for i, s in enumerate(recipe.sft.sources if recipe.sft and require_sft_data else [])
        if not recipe.resolve(s.path).is_file()
    ]
    if missing:
        raise FournilError(f"{origin}: {len(missing)} problem{'s' * (len(missing) > 1)}:\n  " + "\n  ".join(missing))
    return recipe


def _made_by_instruct(recipe: Recipe, path: str) -> str:
    """A hint when a missing sft file lies in the output folder of the recipe's instruct: section."""
    if recipe.instruct is None:
        return ""
    output = recipe.resolve(recipe.instruct.output).resolve()
    if output not in recipe.resolve(path).resolve().parents:
        return ""
    return "; it is the output of the recipe's instruct: section: run `fournil instruct generate RECIPE` first"


def read_yaml(path: Path, what: str) -> Any:
    """A YAML file's data, or a one-line error naming `what` it is (a recipe, an instruct config)."""
    if not path.is_file():
        raise FournilError(f"{what} {path}: no such file")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise FournilError(f"{what} {path}: not valid YAML ({str(error).splitlines()[0]})") from None


def load_recipe(path: str | Path, overrides: list[str] = (), proxy: str | None = None, require_sft_data: bool = True) -> Recipe:
    """Read, override and validate a recipe file; with `proxy` (a size of `fournil.proxy.SIZES`), at
    proxy scale, the overrides applied after the shrinking."""
    path = Path(path)
    data = read_yaml(path, "recipe")
    if proxy is not None:
        from fournil.proxy import SIZES, proxy_data

        if proxy not in SIZES:
            raise FournilError(f"--proxy-size {proxy!r}: choose one of {', '.join(SIZES)}")
        full = parse_recipe(data, path.resolve().parent, origin=f"recipe {path}")
        if full.proxy is not None:
            raise FournilError(f"recipe {path} is a proxy already (its proxy: section); run it without --proxy")
        data = proxy_data(data, full, proxy)
    data = apply_overrides(data if isinstance(data, dict) else {}, list(overrides)) if overrides else data
    return parse_recipe(data, path.resolve().parent, origin=f"recipe {path}", require_sft_data=require_sft_data)
