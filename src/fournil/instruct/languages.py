"""A language's pack: seed tasks, the request to the teacher, the labels of a task and the blacklist.

The shipped packs (en, fr, de, es, it, pt) were written in each language, not translated from one
list; a user gives other languages or other seeds as files of the same shape. The teacher answers in
the labelled layout of the examples it was shown, which `parse_tasks` reads back.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from fournil.errors import FournilError

PACKS = Path(__file__).parent
LABELS = ("task", "instruction", "input", "output", "no_input")


@dataclass(frozen=True)
class Seed:
    id: str
    instruction: str
    input: str
    output: str


@dataclass(frozen=True)
class Task:
    instruction: str
    input: str
    output: str


@dataclass(frozen=True)
class Pack:
    lang: str
    labels: dict[str, str]
    prompt: str
    blacklist: tuple[str, ...]
    seeds: tuple[Seed, ...]

    def render(self, seeds: list[Seed], count: int) -> str:
        """The request: `seeds` as tasks 1..k in the labelled layout, asking for tasks k+1..k+count."""
        blocks = [self.block(i, s.instruction, s.input, s.output) for i, s in enumerate(seeds, 1)]
        return self.prompt.format(count=count, examples="\n\n".join(blocks), first=len(seeds) + 1, last=len(seeds) + count)

    def block(self, number: int, instruction: str, input: str, output: str) -> str:
        lab = self.labels
        return (f"{lab['task']} {number}\n{lab['instruction']}: {instruction}\n"
                f"{lab['input']}: {input or lab['no_input']}\n{lab['output']}: {output}")

    def pick_seeds(self, seed: int, index: int, k: int) -> list[Seed]:
        """The seed tasks shown in request `index`: the same for the same seed on any machine."""
        return random.Random(f"{seed}/{self.lang}/{index}").sample(list(self.seeds), min(k, len(self.seeds)))


def _label_pattern(labels: dict[str, str]) -> re.Pattern:
    """A line that starts a field: optional markdown (#, *, -), an optional number, the label, a colon."""
    names = "|".join(re.escape(labels[k]) for k in ("task", "instruction", "input", "output"))
    return re.compile(rf"^[ \t#*_>-]*(?:\d+[.)]?\s*)?({names})(?:\s*\d+)?[*_ \t\u00a0]*(:|[.)]?\s*$)[*_ \t]*", re.MULTILINE | re.IGNORECASE)


def parse_tasks(pack: Pack, text: str) -> list[Task | None]:
    """The tasks of a teacher's answer in order; None for a block without an instruction or an output."""
    pattern = _label_pattern(pack.labels)
    kind = {pack.labels[k].lower(): k for k in ("task", "instruction", "input", "output")}
    fields: list[tuple[str, str]] = []
    matches = list(pattern.finditer(text))
    for m, after in zip(matches, matches[1:] + [None]):
        value = text[m.end():after.start() if after else len(text)].strip()
        fields.append((kind[m.group(1).lower()], value))
    tasks: list[Task | None] = []
    current: dict[str, str] | None = None
    for name, value in fields:
        starts = name == "task" or name == "instruction" and current is not None and "instruction" in current
        if starts and current:
            tasks.append(_task(current, pack.labels["no_input"]))
            current = None
        if name != "task":
            current = current if current is not None else {}
            current[name] = value
    if current:
        tasks.append(_task(current, pack.labels["no_input"]))
    return tasks


def _task(fields: dict[str, str], no_input: str) -> Task | None:
    instruction, output = fields.get("instruction", ""), fields.get("output", "")
    if not instruction or not output:
        return None
    given = fields.get("input", "")
    return Task(instruction, "" if given.strip(" .").lower() in (no_input.lower(), no_input.strip("()«»“„\"").lower(), "") else given, output)


def load_pack(lang: str, seeds_path: Path | None = None, pack_path: Path | None = None) -> Pack:
    """The shipped pack of `lang`, or the user's files; a missing language is an error naming what to give."""
    pack_file = pack_path or PACKS / "languages" / f"{lang}.yaml"
    seeds_file = seeds_path or PACKS / "seeds" / f"{lang}.jsonl"
    if not pack_file.is_file():
        raise FournilError(f"instruct: no prompt for language {lang!r} (fournil ships en, fr, de, es, it, pt); "
                           f"give languages.{lang}.prompt_file, a YAML with labels, prompt and blacklist (see docs/instruct.md)")
    if not seeds_file.is_file():
        raise FournilError(f"instruct: no seed tasks for language {lang!r} at {seeds_file}; give languages.{lang}.seeds_file, "
                           "a JSONL of {id, instruction, input, output}")
    try:
        data = yaml.safe_load(pack_file.read_text(encoding="utf-8"))
        labels = {k: str(data["labels"][k]) for k in LABELS}
        prompt, blacklist = str(data["prompt"]), tuple(str(w) for w in data.get("blacklist") or ())
        prompt.format(count=1, examples="", first=1, last=1)
    except (yaml.YAMLError, KeyError, TypeError, IndexError, ValueError) as error:
        raise FournilError(f"instruct: {pack_file}: needs labels ({', '.join(LABELS)}), a prompt with "
                           f"{{count}} {{examples}} {{first}} {{last}}, and a blacklist list ({type(error).__name__}: {error})") from None
    return Pack(lang, labels, prompt, blacklist, _read_seeds(seeds_file))


def _read_seeds(path: Path) -> tuple[Seed, ...]:
    seeds = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            seeds.append(Seed(str(row.get("id") or f"{path.stem}-{number}"), row["instruction"], row.get("input") or "", row["output"]))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            raise FournilError(f"instruct: {path} line {number}: expected a JSON object with instruction, input and output") from None
    if not seeds:
        raise FournilError(f"instruct: {path} holds no seed task")
    return tuple(seeds)
