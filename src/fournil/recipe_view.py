"""The recipe as a stage sees it: only the fields its `Stage` declares.

A stage's fingerprint hashes the recipe fields it declares, so a field it reads without declaring
could change without the stage rerunning (a stale model card after `description` changed). The
`StageContext` therefore hands a stage a `RecipeView`: reading a declared field (or a part of one)
gives the recipe's own value; reading any other raises `UndeclaredField`, in tests as in real runs.
A few helpers say nothing about what a stage makes and are always there: `name` (it names the run
folder), `base_dir`, `resolve` and `source_files` (paths are hashed absolute).
"""

from __future__ import annotations

from typing import Any

ALWAYS = frozenset({"name", "base_dir", "resolve", "source_files"})


class UndeclaredField(RuntimeError):
    """A stage read a recipe field it does not declare: a bug in the stage, so not a FournilError."""


def restrict(data: dict, fields: tuple[str, ...]) -> dict:
    """The parts of a plain-data recipe (or section) that the dotted `fields` name."""
    kept: dict[str, Any] = {}
    for dotted in fields:
        head, _, rest = dotted.partition(".")
        if head not in data:
            continue
        if not rest:
            kept[head] = data[head]
        elif isinstance(data[head], dict):
            kept[head] = {**kept.get(head, {}), **restrict(data[head], (rest,))}
    return kept


class RecipeView:
    """Read-only access to the declared `fields` (dotted paths) of a recipe or of one of its sections."""

    def __init__(self, target: Any, fields: tuple[str, ...], stage: str, where: str = ""):
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_fields", tuple(fields))
        object.__setattr__(self, "_stage", stage)
        object.__setattr__(self, "_where", where)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if (not self._where and name in ALWAYS) or name in self._fields:
            return getattr(self._target, name)
        parts = tuple(f[len(name) + 1:] for f in self._fields if f.startswith(name + "."))
        if parts:
            return RecipeView(getattr(self._target, name), parts, self._stage, f"{self._where}{name}.")
        raise UndeclaredField(f"the {self._stage} stage reads recipe field {self._where}{name} without declaring it: "
                              f"add it to the stage's fields in fournil.runs.STAGES")

    def __setattr__(self, name: str, value: Any) -> None:
        raise UndeclaredField(f"the {self._stage} stage sets recipe field {self._where}{name}: stages only read the recipe")

    def model_dump(self, **options: Any) -> dict:
        return restrict(self._target.model_dump(**options), self._fields)

    def fingerprint_view(self) -> dict:
        return restrict(self._target.fingerprint_view(), self._fields)

    def __repr__(self) -> str:
        return f"RecipeView({self._stage}: {', '.join(self._where + f for f in self._fields)})"
