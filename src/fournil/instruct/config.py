"""The self-instruct config: a small YAML, validated into typed settings with one line per problem.

Paths are relative to the config file's folder.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError, model_validator

from fournil.errors import FournilError
from fournil.schema import Section


class Teacher(Section):
    base_url: str | None = Field(None, description="an OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    model: str | None = Field(None, description="the endpoint's model name")
    api_key_env: str | None = Field(None, description="name of the environment variable holding the API key (never the key itself)")
    model_dir: str | None = Field(None, description="or a local model folder (fournil release, checkpoint or transformers Llama)")
    device: str = "auto"
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(1536, ge=16)
    concurrency: int = Field(8, ge=1, le=256, description="requests in flight at once")
    timeout_s: float = Field(120, gt=0)
    retries: int = Field(4, ge=0, description="further attempts after a failed one, with exponential back-off")
    backoff_s: float = Field(1.0, ge=0, description="wait before the first retry; doubled each time")

    @model_validator(mode="after")
    def _one_kind(self) -> Teacher:
        if (self.base_url is None) == (self.model_dir is None):
            raise ValueError("teacher: give either base_url and model (an OpenAI-compatible endpoint) or model_dir (a local model)")
        if self.base_url is not None and not self.model:
            raise ValueError("teacher.model: missing (the endpoint's model name)")
        if self.base_url is not None and not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"teacher.base_url = {self.base_url!r}: must start with http:// or https://")
        return self


class Language(Section):
    seeds_file: str | None = Field(None, description="JSONL of {id, instruction, input, output}; default: the shipped seeds")
    prompt_file: str | None = Field(None, description="YAML with labels, prompt and blacklist; default: the shipped one")
    blacklist: list[str] = Field(default_factory=list, description="words added to the language's blacklist")


class Filters(Section):
    instruction_words: tuple[int, int] = Field((3, 150), description="instruction length bounds, in words")
    output_words: tuple[int, int] = Field((1, 400), description="output length bounds, in words")
    rouge_l: float = Field(0.7, gt=0, le=1, description="drop an instruction this similar (ROUGE-L F1) to a kept one")
    language_min_score: float = Field(0.4, ge=0, le=1, description="the target language must be the most likely one, with at least this probability")
    language_min_letters: int = Field(20, ge=0, description="texts with fewer letters are not language-checked (a number, a name)")
    langid_languages: list[str] = Field(default_factory=lambda: ["en", "fr", "de", "es", "it", "pt"],
                                        description="languages the identifier chooses among, besides the target languages")


class Settings(Section):
    """What a standalone config and a recipe's `instruct:` section share: the target, the requests, the
    teacher and the filters."""

    examples_per_language: int = Field(ge=1, description="stop a language once this many examples are kept")
    max_requests_per_language: int | None = Field(None, ge=1, description="give up on a language after this many requests (default: 4× what the target needs)")
    seed_examples: int = Field(3, ge=1, description="seed tasks shown in each request")
    new_tasks: int = Field(5, ge=1, description="new tasks asked for in each request")
    teacher: Teacher
    filters: Filters = Filters()


def _as_mapping(languages: dict[str, Language] | list[str]) -> dict[str, Language]:
    languages = {lang: Language() for lang in languages} if isinstance(languages, list) else languages
    if not languages:
        raise ValueError("languages: give at least one language")
    return languages


class InstructConfig(Settings):
    output: str = Field(description="output folder: examples.jsonl, dropped.jsonl, answers.jsonl, stats.json")
    languages: dict[str, Language] | list[str] = Field(description="target languages (list, or mapping to per-language settings)")
    seed: int = 0
    base_dir: Path = Field(Path("."), exclude=True)

    @model_validator(mode="after")
    def _mapping(self) -> InstructConfig:
        self.__dict__["languages"] = _as_mapping(self.languages)
        return self

    def resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    @property
    def max_requests(self) -> int:
        return self.max_requests_per_language or 4 * -(-self.examples_per_language // self.new_tasks)


class RecipeInstruct(Settings):
    """A recipe's `instruct:` section: the recipe carries the settings that made its self-instruct data.
    Languages and seed default to the recipe's; paths are relative to the recipe file."""

    output: str = Field(description="output folder, relative to the recipe; sft.sources can read its examples.jsonl")
    languages: dict[str, Language] | list[str] | None = Field(None, description="target languages; default: the recipe's")
    seed: int | None = Field(None, description="default: the recipe's seed")

    @model_validator(mode="after")
    def _mapping(self) -> RecipeInstruct:
        if self.languages is not None:
            self.__dict__["languages"] = _as_mapping(self.languages)
        return self

    def config(self, languages: list[str], seed: int, base_dir: Path) -> InstructConfig:
        """The standalone config this section stands for, in a recipe of `languages` and `seed`."""
        data = self.model_dump(exclude={"languages", "seed"})
        chosen = self.languages if self.languages is not None else {lang: Language() for lang in languages}
        return InstructConfig.model_validate({**data, "languages": chosen, "seed": seed if self.seed is None else self.seed,
                                              "base_dir": base_dir})


def load_config(path: str | Path, overrides: list[str] = ()) -> InstructConfig:
    """Read, override and validate a config file, or the `instruct:` section of a recipe (a mapping
    with `sources`); every problem on its own line."""
    from fournil.recipe import _format_errors, apply_overrides, load_recipe, read_yaml

    path = Path(path)
    data = read_yaml(path, "instruct config")
    if not isinstance(data, dict):
        raise FournilError(f"instruct config {path}: expected a mapping (output, languages, examples_per_language, teacher, ...)")
    if "sources" in data:  # a recipe: its overrides are the recipe's dotted paths (instruct.teacher.concurrency=16)
        recipe = load_recipe(path, list(overrides), require_sft_data=False)
        if recipe.instruct is None:
            raise FournilError(f"recipe {path} has no instruct: section; add one (docs/instruct.md) or give a self-instruct config file")
        return recipe.instruct.config(recipe.language_codes, recipe.seed, recipe.base_dir)
    data = apply_overrides(data, list(overrides))
    try:
        return InstructConfig.model_validate({**data, "base_dir": path.resolve().parent})
    except ValidationError as error:
        lines = [line.replace("docs/recipe.md", "docs/instruct.md") for line in _format_errors(error, data)]
        raise FournilError(f"instruct config {path}: {len(lines)} problem{'s' * (len(lines) > 1)}: " + "; ".join(lines)) from None
