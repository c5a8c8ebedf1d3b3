"""The bases of recipe sections and of stage figures.

A recipe section forbids unknown fields, so a typo never passes silently. A stage's figures (what
`run(ctx)` returns, kept in its manifest) are a `Figures` model beside the stage's config, so the
release reads them by name instead of guessing. Figures allow unknown fields only so that a
manifest written by an older fournil still reads; `undeclared` finds them, and `runs.run_stage`
refuses a stage that returns one (a figure nobody declared is a figure nobody can rely on).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Figures(BaseModel):
    """A stage's figures; every field optional (None: not recorded), so older manifests still read."""

    model_config = ConfigDict(extra="allow")


def undeclared(model: BaseModel, where: str = "") -> list[str]:
    """Dotted names of the fields in `model` (and the models inside it) that its class does not declare."""
    found = [f"{where}{name}" for name in (model.model_extra or {})]
    for name in type(model).model_fields:
        found += _inside(getattr(model, name), f"{where}{name}.")
    return found


def _inside(value: object, where: str) -> list[str]:
    if isinstance(value, BaseModel):
        return undeclared(value, where)
    if isinstance(value, dict):
        return [f for key, item in value.items() for f in _inside(item, f"{where}{key}.")]
    if isinstance(value, list | tuple):
        return [f for i, item in enumerate(value) for f in _inside(item, f"{where}{i}.")]
    return []
