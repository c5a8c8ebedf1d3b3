"""The `release:` section of a recipe.

Everything here is what only a person can say (names, licence, intended use); every figure in the
release is read from the run's records instead.
"""

from typing import Literal

from pydantic import Field, field_validator

from fournil.release.fmti import DISCLOSURE_KEYS
from fournil.schema import Section


class ReleaseConfig(Section):
    model_name: str | None = Field(None, description="name in the card and the model-index; default: the recipe name")
    repo_id: str | None = Field(None, description="Hub id used in the loading examples, e.g. my-org/my-model; default: the model name")
    license: str = Field("apache-2.0", description="licence of the weights, as a Hub licence id")
    authors: list[str] = Field(default_factory=list)
    contact: str | None = Field(None, description="where to report problems (e-mail or URL)")
    datasets: list[str] = Field(default_factory=list, description="Hub dataset ids of the training data, for the card metadata")
    tags: list[str] = Field(default_factory=list, description="extra Hub tags")
    intended_use: str | None = Field(None, description="the team's statement of intended uses; without it the card says none was given")
    out_of_scope_use: str | None = Field(None, description="uses the team advises against")
    training_location: str | None = Field(None, description="country or region of the training hardware, for co2_eq_emissions")
    gguf: bool = Field(False, description="also write GGUF files for llama.cpp, one per `gguf_types`")
    gguf_types: list[Literal["f32", "f16", "q8_0", "q4_0"]] = Field(
        ["f16", "q8_0", "q4_0"], min_length=1, description="weight types of the GGUF files, each written as <model_name>-<TYPE>.gguf")
    disclosures: dict[str, str] = Field(default_factory=dict, description="the team's statements for the transparency indicators only people can answer, by key (wages, data_creators, ...; see docs/release.md); each is shown in the card and meets its indicator")

    @field_validator("disclosures")
    @classmethod
    def _known_indicators(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(DISCLOSURE_KEYS))
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not a transparency indicator that takes a statement; keys are {', '.join(DISCLOSURE_KEYS)}")
        return {k: v for k, v in value.items() if v.strip()}
