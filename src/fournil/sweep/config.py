"""What a sweep is: a base recipe, the fields it varies and their values, seeds, scale.

Given on the command line (`--vary FIELD=V1,V2`) or as a sweep file, a YAML mapping with one key,
`sweep:`, whose `recipe:` names the base recipe relative to the file; the command line adds to a
file's settings. The resolved sweep is written to `runs/<sweep>/sweep.yaml`, itself a sweep file:
each point can be run from it alone (`--point`), which is how a cluster runs points as jobs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator

from fournil.errors import FournilError
from fournil.recipe import _format_errors, read_yaml
from fournil.schema import Section

SEED_FIELD = "train.seed"  # --seeds varies the training seed only: corpus, tokenizer and mixture are shared


class SweepConfig(Section):
    recipe: str = Field(description="the base recipe, relative to the sweep file")
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$",
                             description="names the sweep folder runs/<name>/; default: the recipe's name and the varied fields")
    vary: dict[str, list[Any]] = Field(default_factory=dict, description="dotted recipe field → its values, in order")
    zip: bool = Field(False, description="points are the i-th values of every field together, instead of every combination")
    seeds: int = Field(1, ge=1, description="each point with this many training seeds (train.seed), for error bars")
    proxy: Literal["small", "tiny"] | None = Field(None, description="bake every point at this proxy scale (docs/recipe.md)")
    set: list[str] = Field(default_factory=list, description="--set overrides of the base recipe, for every point")
    until: str | None = Field(None, description="stop every point after this stage (the report needs evaluate)")
    executor: Literal["local", "slurm", "ray"] = Field("local", description="what runs the points' tasks: this machine, Slurm jobs or Ray tasks")
    executor_options: dict[str, Any] = Field(default_factory=dict, description="for slurm or ray: partition, time, cpus_per_task, "
                                             "gpus, processes (torchrun processes for a point's training), ... (docs/sweep.md)")

    @field_validator("vary")
    @classmethod
    def _values(cls, vary: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for field, values in vary.items():
            if not values:
                raise ValueError(f"{field}: give at least one value")
            seen = [yaml.safe_dump(v, sort_keys=True) for v in values]
            twice = sorted({v for v in seen if seen.count(v) > 1})
            if twice:
                raise ValueError(f"{field}: the value {twice[0].strip().removesuffix('...').strip()} is given twice")
        if SEED_FIELD in vary:
            raise ValueError(f"{SEED_FIELD}: vary the training seed with seeds: N (--seeds N)")
        return vary

    @field_validator("until")
    @classmethod
    def _stage(cls, until: str | None) -> str | None:
        from fournil.runs import STAGE_NAMES

        if until is not None and until not in STAGE_NAMES:
            raise ValueError(f"stages are {', '.join(STAGE_NAMES)}")
        return until


def parse_vary(item: str) -> tuple[str, list[Any]]:
    """`FIELD=V1,V2,...` as (field, values), each value read as YAML (`{fr: 0.7, en: 0.3},{fr: 0.5, en: 0.5}` works)."""
    field, sep, raw = item.partition("=")
    field = field.strip()
    if not sep or not field or not raw.strip():
        raise FournilError(f"--vary {item!r}: expected FIELD=V1,V2,..., e.g. --vary languages.fr=0.3,0.5,0.7")
    try:
        values = yaml.safe_load(f"[{raw}]")
    except yaml.YAMLError:
        values = [v.strip() for v in raw.split(",")]
    return field, values


def is_sweep_file(data: Any) -> bool:
    return isinstance(data, dict) and "sweep" in data


def build(path: Path, vary: list[str], seeds: int | None, zipped: bool, proxy: str | None, overrides: list[str],
          name: str | None, until: str | None, executor: str | None = None,
          executor_options: list[str] = ()) -> tuple[SweepConfig, Path]:
    """The sweep from a recipe or sweep file and the command line's options; returns it with the base recipe's path."""
    data = read_yaml(path, "recipe or sweep file")
    if is_sweep_file(data):
        if set(data) != {"sweep"}:
            raise FournilError(f"sweep file {path}: holds only `sweep:` (its `recipe:` names the recipe), not {sorted(set(data) - {'sweep'})}")
        spec = data["sweep"] if isinstance(data["sweep"], dict) else {}
        origin, base = f"sweep file {path}", path.resolve().parent
    else:
        spec, origin, base = {"recipe": str(path)}, f"--vary on {path}", Path.cwd()
    spec = dict(spec)
    given = spec.get("vary") or {}
    if isinstance(given, dict):  # else validation names what is wrong with it
        given = dict(given)
        for item in vary:
            field, values = parse_vary(item)
            if field in given:
                raise FournilError(f"--vary {field}: this field is varied twice; give all its values in one --vary")
            given[field] = values
        spec["vary"] = given
    if overrides:
        spec["set"] = [*(spec.get("set") or []), *overrides]
    if executor_options:
        options = spec.get("executor_options") or {}
        spec["executor_options"] = dict(options) if isinstance(options, dict) else options
        for item in executor_options:
            key, sep, raw = item.partition("=")
            if not sep or not key.strip():
                raise FournilError(f"--executor-option {item!r}: expected KEY=VALUE, e.g. --executor-option partition=gpu")
            if isinstance(spec["executor_options"], dict):
                spec["executor_options"][key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
    for key, value in (("seeds", seeds), ("proxy", proxy), ("name", name), ("until", until), ("executor", executor)):
        if value is not None:
            spec[key] = value
    if zipped:
        spec["zip"] = True
    try:
        config = SweepConfig.model_validate(spec)
    except ValidationError as error:
        lines = [line.replace("docs/recipe.md", "docs/sweep.md") for line in _format_errors(error, spec)]
        raise FournilError(f"{origin}: {len(lines)} problem{'s' * (len(lines) > 1)}:\n  " + "\n  ".join(lines)) from None
    recipe = Path(config.recipe).expanduser()
    recipe = recipe if recipe.is_absolute() else base / recipe
    if not config.vary and config.seeds == 1:
        raise FournilError(f"{origin}: nothing varies; give --vary FIELD=V1,V2 (or vary: in the sweep file) or --seeds N")
    return config.model_copy(update={"recipe": str(recipe.resolve())}), recipe


def write(config: SweepConfig, path: Path) -> None:
    """The resolved sweep as a sweep file (the recipe's path absolute)."""
    data = {"sweep": config.model_dump(mode="json", exclude_defaults=True) | {"recipe": config.recipe}}
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
