"""The run folder: one subfolder per stage, each closed by a manifest.

`runs/<name>/<stage>/manifest.json` records the stage's fingerprint (a hash of the recipe fields it
reads and of the fingerprints of the stages it reads from), its outputs, figures, wall time and
library versions. A stage whose manifest carries the current fingerprint is skipped. A stage whose
folder holds work for the current fingerprint but no manifest was interrupted: it is resumed (the
stage picks up its own partial work, e.g. finished corpus shards or the last checkpoint). A stage
whose fingerprint changed starts from an empty folder, and so do the stages after it, since their
fingerprints include it. Some fields change only part of a stage's work (the train stage's
logging, checkpoint cadence, devices, micro-batch, max_steps; the mixture's plan, not its shards): a
change to those keeps the stage's work and resumes it, because its lineage (the fingerprint without
them) is unchanged; what such a stage keeps as it is (the shards) is checked against its manifest
first. Work that is costly to redo (checkpoints) is discarded only with --force; `run_all` checks
that before running any stage, since a fingerprint is a hash of inputs and so known in advance.

Every output's size and xxh3-128 hash are recorded, and checked whenever they are trusted again: a
skipped stage's own outputs, and the outputs of the stages a stage reads, before it runs (so before
--force discards anything). Checkpoints are left to their own checksums (`train/checkpoint.py`).
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import importlib
import importlib.metadata
import json
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import xxhash

from fournil import __version__
from fournil.atomic import write_text
from fournil.errors import FournilError
from fournil.recipe import Recipe
from fournil.recipe_view import RecipeView
from fournil.schema import Figures, undeclared

MANIFEST = "manifest.json"
STARTED = ".fingerprint"  # written when a stage starts, holding its inputs; present without a manifest means "interrupted"


@dataclass(frozen=True)
class Stage:
    """A step of the bake: the recipe fields it reads, the stages it reads from, its entry point and
    the model of its figures. The stage sees only the declared fields (`fournil.recipe_view`)."""

    name: str
    fields: tuple[str, ...]
    needs: tuple[str, ...]
    entry: str  # "module:function", the function takes a StageContext and returns figures
    help: str
    adjustable: tuple[str, ...] = ()  # fields under `fields` whose change resumes the stage's work instead of discarding it
    costly: str = ""  # a glob of work too costly to discard without --force (the train stage's checkpoints)
    kept: str = ""  # a glob of work that a resumed stage keeps as it is and only reads, so the bytes are those of a fresh
    # run (the mixture's shards): runs of the same lineage can share it (`fournil sweep`)
    figures: str = ""  # "module:Class", the stage's `fournil.schema.Figures` model; "" takes a plain dict


# The mixture fields that only its plan reads: a change re-plans and keeps the encoded shards
PLAN_SETTINGS = ("languages", "mixture.weights", "mixture.alpha", "mixture.max_epochs", "mixture.stages", "mixture.canaries",
                 "train.max_steps", "train.global_batch_tokens")

# Training-loop fields that say how a run is done, not what it makes (train: and sft: both have them)
LOOP_SETTINGS = ("max_steps", "micro_batch_size", "parallelism", "device", "compile", "activation_checkpointing",
                 "checkpoint_every", "keep_last", "milestone_every", "log_every", "eval_every", "eval_docs_per_language",
                 "eval_batch_size", "spike_sigma", "spike_min_history", "rollback_after", "max_rollbacks", "peak_flops",
                 "grid_g_per_kwh", "cpu_watts_per_core", "codecarbon_country", "tensorboard", "wandb_project")

STAGES: tuple[Stage, ...] = (
    Stage("corpus", ("seed", "language_codes", "sources", "corpus"), (), "fournil.corpus.stage:run",
          "read raw text, identify languages, filter, deduplicate, scrub PII, hold out evaluation documents",
          figures="fournil.corpus.figures:CorpusFigures"),
    Stage("tokenizer", ("seed", "language_codes", "parallel", "tokenizer"), ("corpus",), "fournil.tokenizer.stage:run",
          "train a byte-level BPE on a language-balanced sample and measure its fairness",
          figures="fournil.tokenizer.figures:TokenizerFigures"),
    Stage("mixture", ("seed", "languages", "sources", "parallel", "mixture", "train.max_steps", "train.global_batch_tokens"),
          ("corpus", "tokenizer"), "fournil.mixture.stage:run",
          "encode the corpus into token shards and plan how many tokens each language and source gives",
          adjustable=PLAN_SETTINGS, kept="shards/*", figures="fournil.mixture.figures:MixtureFigures"),
    Stage("train", ("seed", "languages", "model", "train"), ("corpus", "tokenizer", "mixture"), "fournil.train.stage:run",
          "train the model, checkpointing as it goes",
          adjustable=tuple(f"train.{f}" for f in LOOP_SETTINGS),
          costly="checkpoints/step_*", figures="fournil.train.figures:TrainFigures"),
    Stage("sft", ("seed", "languages", "sft"), ("tokenizer", "train"), "fournil.sft.stage:run",
          "instruction-tune the model on conversations (skipped without an sft: section)",
          adjustable=tuple(f"sft.{f}" for f in LOOP_SETTINGS),
          costly="checkpoints/step_*", figures="fournil.sft.figures:SftFigures"),
    Stage("evaluate", ("seed", "languages", "evaluate"), ("corpus", "tokenizer", "mixture", "train", "sft"), "fournil.evaluate.stage:run",
          "bits per byte per language on held-out documents, tasks, memorisation",
          figures="fournil.evaluate.figures:EvaluateFigures"),
    Stage("release", ("description", "seed", "languages", "sources", "parallel", "corpus.pii", "corpus.decontaminate",
                      "corpus.heldout_fraction", "train.optimizer", "train.lr", "train.schedule", "train.warmup_steps",
                      "train.min_lr_ratio", "train.decay_fraction", "train.weight_decay", "train.global_batch_tokens", "sft",
                      "release", "proxy"),
          ("corpus", "tokenizer", "mixture", "train", "sft", "evaluate"), "fournil.release.stage:run",
          "a Hugging Face model folder with model card, datasheet, transparency checklist and report",
          figures="fournil.release.figures:ReleaseFigures"),
)
STAGE_NAMES = tuple(s.name for s in STAGES)


def get_stage(name: str) -> Stage:
    for stage in STAGES:
        if stage.name == name:
            return stage
    raise FournilError(f"unknown stage {name!r}; stages are {', '.join(s.name for s in STAGES)}")


def _pick(data: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        data = data[part]
    return data


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_digests: dict[tuple, str] = {}  # (path, size, mtime, ctime, inode) → hash: one process hashes an unchanged file once


def listing_xxh3(paths: list[Path]) -> str:
    """xxh3-128 of each file's path, size and modification time: what a raw source's change shows
    without reading it (hashing a terabyte of text on every `fournil run` would take hours; a file
    rewritten in place has a new mtime, so the corpus stage runs again)."""
    h = xxhash.xxh3_128()
    for path in paths:
        st = path.stat()
        h.update(f"{path}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def file_xxh3(path: Path) -> str:
    """xxh3-128 of a file: damage, not tampering, is what a manifest guards against, and at several
    GB/s it costs little beside the disk read (sha256 is about 10× slower)."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    if key not in _digests:
        h = xxhash.xxh3_128()
        with open(path, "rb") as f:
            while block := f.read(1 << 22):
                h.update(block)
        _digests[key] = h.hexdigest()
    return _digests[key]


def check_outputs(stage_dir: Path, manifest: dict | None = None, only: str = "") -> None:
    """Raise a FournilError naming the first output of a finished stage (those matching the glob
    `only`, when given) that is missing or no longer has the size and hash its manifest recorded
    (manifests of older fournil: sha256, or size alone)."""
    manifest = manifest if manifest is not None else read_manifest(stage_dir)
    costly = next((s.costly for s in STAGES if s.name == stage_dir.name), "")
    redo = f"rerun that stage: `fournil {stage_dir.name} RECIPE --force`"
    for relative, entry in (manifest.get("outputs") or {}).items():
        if (costly and fnmatch.fnmatchcase(relative, costly + "/*")) or (only and not fnmatch.fnmatchcase(relative, only)):
            continue
        path = stage_dir / relative
        try:
            size = path.stat().st_size
        except OSError:
            raise FournilError(f"{path} is missing, though the {stage_dir.name} stage wrote it; {redo}") from None
        if size != entry.get("bytes", size):
            raise FournilError(f"{path} has {size} bytes, the {stage_dir.name} stage recorded {entry['bytes']}: it is damaged; {redo}")
        if ("xxh3_128" in entry and file_xxh3(path) != entry["xxh3_128"]) or (
                "xxh3_128" not in entry and "sha256" in entry and file_sha256(path) != entry["sha256"]):
            raise FournilError(f"{path} does not match the hash the {stage_dir.name} stage recorded: it is damaged; {redo}")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "fournil": __version__}
    for package in ("torch", "tokenizers", "datatrove", "py3langid", "numpy", "xxhash", "zstandard", "safetensors", "transformers"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def host() -> dict[str, Any]:
    """Where the stage ran, and what besides `versions` could make the same recipe give other bytes:
    torch's thread count (float sums on the CPU split by threads). Python's hash seed is recorded to
    show that it does not matter: nothing in fournil hashes with the salted `hash()`."""
    torch = sys.modules.get("torch")  # only the stages that use torch load it
    return {"platform": platform.platform(), "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads() if torch is not None else None,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "python_hash_seed": os.environ.get("PYTHONHASHSEED", "random")}


@dataclass
class StageContext:
    """What a stage gets: the recipe fields it declares, its own empty-or-resumable folder, and read
    access to earlier stages. Given the whole recipe, it keeps only the stage's `RecipeView` of it."""

    recipe: Recipe | RecipeView
    run_dir: Path
    stage: Stage
    fingerprint: str
    resuming: bool = False
    log: Callable[[str], None] = field(default=lambda message: print(message, file=sys.stderr))

    def __post_init__(self) -> None:
        if not isinstance(self.recipe, RecipeView):
            self.recipe = RecipeView(self.recipe, self.stage.fields, self.stage.name)

    @property
    def out(self) -> Path:
        return self.run_dir / self.stage.name

    def input(self, name: str) -> Path:
        """The folder of an earlier, completed stage."""
        if name not in self.stage.needs:
            raise RuntimeError(f"stage {self.stage.name} reads {name} without declaring it in Stage.needs")
        return completed_dir(self.run_dir, name)

    def manifest(self, name: str) -> dict:
        return read_manifest(self.input(name))


def read_manifest(stage_dir: Path) -> dict:
    path = stage_dir / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FournilError(f"{stage_dir} has no manifest: run `fournil {stage_dir.name} RECIPE` (or `fournil run RECIPE`) first") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise FournilError(f"{path} is corrupt: delete {stage_dir} and run that stage again") from None


def figures_model(stage: Stage) -> type[Figures] | None:
    if not stage.figures:
        return None
    module_name, class_name = stage.figures.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def recorded_figures(stage: Stage, returned: Any) -> dict:
    """What a stage's `run` returned, checked against its figures model, as the manifest's plain data."""
    model = figures_model(stage)
    if model is None:
        return dict(returned or {})
    if not isinstance(returned, model):
        returned = model.model_validate(returned or {})
    extra = undeclared(returned)
    if extra:
        raise RuntimeError(f"the {stage.name} stage returns figures that {model.__name__} does not declare: {', '.join(extra)}")
    return returned.model_dump(mode="json", exclude_unset=True)


def read_figures(stage: Stage, manifest: dict | None) -> Figures | None:
    """A manifest's figures as the stage's model, or None when absent or not of that shape."""
    model = figures_model(stage)
    figures = (manifest or {}).get("figures")
    if model is None or not isinstance(figures, dict):
        return None
    try:
        return model.model_validate(figures)
    except ValueError:  # pydantic's ValidationError: a manifest of another shape
        return None


def completed_dir(run_dir: Path, name: str) -> Path:
    stage_dir = run_dir / name
    read_manifest(stage_dir)
    return stage_dir


def fingerprint(recipe: Recipe, run_dir: Path, stage: Stage) -> str:
    """Hash of the recipe fields the stage reads and the fingerprints of the stages it reads from."""
    return _fingerprint_of(stage_inputs(recipe, run_dir, stage), stage)


def _fingerprint_of(inputs: dict, stage: Stage) -> str:
    return _digest({"stage": stage.name, **inputs})


def _with_data_digests(view: dict, recipe: Recipe, fields: tuple[str, ...]) -> dict:
    """The recipe's view with a digest beside each data file or source the fields name, so data changed
    under the same path changes the fingerprint of the stages that read it."""
    if "sft" in fields and view["sft"]:
        for item in view["sft"]["sources"]:  # data rewritten in place (`fournil instruct generate`) reruns sft
            path = Path(item["path"])
            item["xxh3_128"] = file_xxh3(path) if path.is_file() else None  # a missing file: the stage says so
        if view["sft"].get("init_from"):  # a model folder replaced under the same path (a new checkpoint) is tuned again
            folder = recipe.resolve(view["sft"]["init_from"])
            view["sft"]["init_from_listing_xxh3"] = listing_xxh3(sorted(p for p in folder.rglob("*") if p.is_file()))
    if "sources" in fields:
        for item, source in zip(view["sources"], recipe.sources):
            item["listing_xxh3"] = listing_xxh3(recipe.source_files(source))
    for item in view["parallel"] if "parallel" in fields else ():
        path = Path(item["path"])
        item["xxh3_128"] = file_xxh3(path) if path.is_file() else None
    if "corpus" in fields or "corpus.decontaminate" in fields:
        sets = [recipe.resolve(p) for p in recipe.corpus.decontaminate]
        view["corpus"]["decontaminate"] = [{"path": str(p), "xxh3_128": file_xxh3(p) if p.is_file() else None} for p in sets]
    return view


def stage_inputs(recipe: Recipe, run_dir: Path, stage: Stage, upstream: dict[str, str] | None = None) -> dict:
    """The recipe fields a stage reads and the fingerprints of the stages it reads from (their
    manifests', unless given), as plain data."""
    if upstream is None:
        upstream = {name: read_manifest(run_dir / name)["fingerprint"] for name in stage.needs}
    view = _with_data_digests(recipe.fingerprint_view(), recipe, stage.fields)
    return json.loads(json.dumps({"fields": {f: _pick(view, f) for f in stage.fields}, "upstream": upstream}, default=str))


def planned_inputs(recipe: Recipe, run_dir: Path) -> dict[str, dict]:
    """Every stage's inputs as `run_all` would give them, before running anything: a fingerprint
    is a hash of inputs, so an earlier stage's coming fingerprint is known without running it."""
    planned, fingerprints = {}, {}
    for stage in STAGES:
        planned[stage.name] = stage_inputs(recipe, run_dir, stage, {n: fingerprints[n] for n in stage.needs})
        fingerprints[stage.name] = _fingerprint_of(planned[stage.name], stage)
    return planned


def planned_fingerprints(recipe: Recipe) -> dict[str, str]:
    """Every stage's fingerprint under `recipe`, known before anything runs: runs whose stage has
    the same one make the same work there (what `fournil sweep` shares between its points)."""
    return {name: _fingerprint_of(inputs, get_stage(name)) for name, inputs in planned_inputs(recipe, Path(".")).items()}


def planned_lineages(recipe: Recipe) -> dict[str, str]:
    """Every stage's lineage under `recipe`, known before anything runs: runs whose stage has the same
    one can share the stage's `kept` work (the mixtures of a ratio sweep, their shards)."""
    return {name: lineage(inputs, get_stage(name)) for name, inputs in planned_inputs(recipe, Path(".")).items()}


def keeps_work(recipe: Recipe, run_dir: Path, name: str) -> bool:
    """Whether running stage `name` now would resume the work in its folder (same lineage) rather
    than start from an empty one."""
    stage = get_stage(name)
    return _same_lineage(_recorded(run_dir / name), planned_inputs(recipe, run_dir)[name], stage)


def _leaves(data: Any, prefix: str) -> dict[str, Any]:
    """{"train.lr": 0.003, ...}: every value under `data` by its dotted path."""
    if not isinstance(data, dict):
        return {prefix: data}
    return {k: v for key, value in data.items() for k, v in _leaves(value, f"{prefix}.{key}").items()}


def _lasting(inputs: dict, stage: Stage, adjustable: bool = False) -> dict[str, Any]:
    """The inputs that make a stage's work what it is: every field but the adjustable ones (unless
    `adjustable`), and upstream."""
    fields = {k: v for f, value in inputs["fields"].items() for k, v in _leaves(value, f).items()}
    kept = {k: v for k, v in fields.items() if adjustable or not any(k == a or k.startswith(a + ".") for a in stage.adjustable)}
    return {**kept, **{f"the {name} stage's output": fp for name, fp in inputs["upstream"].items()}}


def lineage(inputs: dict, stage: Stage) -> str:
    """The fingerprint without the stage's adjustable fields: work of the same lineage can be resumed."""
    return _digest({"stage": stage.name, "lineage": _lasting(inputs, stage)})


def _recorded(out: Path) -> dict:
    """What made the work in a stage folder: {"inputs"} from its manifest (finished) or STARTED
    (interrupted), or {"fingerprint"} from the STARTED of an older fournil; empty when nothing says."""
    try:
        if (out / MANIFEST).is_file():
            return {"inputs": json.loads((out / MANIFEST).read_text()).get("inputs")}
        if not (out / STARTED).is_file():
            return {}
        text = (out / STARTED).read_text()
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return {}
    try:
        return {"inputs": json.loads(text)["inputs"]}
    except (json.JSONDecodeError, TypeError, KeyError):
        return {"fingerprint": text.strip()}


def _same_lineage(recorded: dict, inputs: dict, stage: Stage) -> bool:
    """Whether the recorded work can be resumed under `inputs`."""
    before = recorded.get("inputs")
    if isinstance(before, dict) and isinstance(before.get("fields"), dict) and isinstance(before.get("upstream"), dict):
        return lineage(before, stage) == lineage(inputs, stage)
    return recorded.get("fingerprint") == _fingerprint_of(inputs, stage)


def _changes(before: dict | None, now: dict, stage: Stage, run_dir: Path, planned: dict[str, dict] | None = None,
             adjustable: bool = False) -> str:
    """What differs between the inputs of earlier work and now, for a message. With `planned`
    (before run_all runs anything), a changed earlier stage is explained by its own changes (any
    field: its fingerprint is what the later stage reads)."""
    if not isinstance(before, dict) or "fields" not in before:
        return "other settings or inputs"
    old, new = _lasting(before, stage, adjustable), _lasting(now, stage, adjustable)
    changed = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) == new.get(key):
            continue
        name = key.split()[1] if key.startswith("the ") else None
        if name and planned:
            cause = _changes(_recorded(run_dir / name).get("inputs"), planned[name], get_stage(name), run_dir, planned, True)
            changed.append(f"{key}, as {cause} there" if cause != "other settings or inputs" else key)
        else:
            changed.append(key if name else f"{key}: {old.get(key)!r} → {new.get(key)!r}")
    shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
    return shown or "other settings or inputs"


def _refuse_to_discard(stage: Stage, out: Path, recorded: dict, inputs: dict, run_dir: Path, planned: dict | None = None) -> None:
    if stage.costly and any(out.glob(stage.costly)) and not _same_lineage(recorded, inputs, stage):
        raise FournilError(f"{out} holds {stage.costly} made with other settings or inputs "
                           f"({_changes(recorded.get('inputs'), inputs, stage, run_dir, planned)}); to discard it and start "
                           f"afresh, run `fournil {stage.name} RECIPE --force`; to keep it, move it away first")


def expected_fingerprint(recipe: Recipe, run_dir: Path, stage: Stage) -> str | None:
    """The fingerprint the stage would have now, or None when an earlier stage is not complete."""
    try:
        return fingerprint(recipe, run_dir, stage)
    except FournilError:
        return None


def is_current(recipe: Recipe, run_dir: Path, stage: Stage) -> bool:
    manifest_path = run_dir / stage.name / MANIFEST
    if not manifest_path.is_file():
        return False
    try:
        recorded = json.loads(manifest_path.read_text()).get("fingerprint")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return recorded is not None and recorded == expected_fingerprint(recipe, run_dir, stage)


def _outputs(stage_dir: Path) -> dict[str, dict]:
    outputs = {}
    for path in sorted(stage_dir.rglob("*")):
        if not path.is_file() or path.name in (MANIFEST, STARTED):
            continue
        outputs[str(path.relative_to(stage_dir))] = {"bytes": path.stat().st_size, "xxh3_128": file_xxh3(path)}
    return outputs


DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR}


def disk_error(error: OSError, where: Path) -> FournilError:
    """A full, read-only or unwritable disk as one line: what failed, and that the same command resumes."""
    what = error.filename or where
    if error.errno == errno.ENOTDIR:
        return FournilError(f"{what}: a file stands where fournil needs a folder; give another --runs-dir or move the file away")
    fix = {errno.ENOSPC: "free some space", errno.EDQUOT: "free some space", errno.EROFS: "give a --runs-dir on a writable disk"}.get(
        error.errno, "fix its permissions (or give another --runs-dir)")
    return FournilError(f"{what}: {error.strerror or error}; {fix}, then run the same command again: finished work is kept")


def _not_a_file(run_dir: Path) -> None:
    for folder in (run_dir, *run_dir.parents):
        if folder.exists() and not folder.is_dir():
            raise FournilError(f"{folder} is a file, not a folder; give another --runs-dir or move the file away")


def _writable(run_dir: Path) -> None:
    """The run folder exists (made if missing) and fournil can write in it."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".fournil-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise disk_error(error, run_dir) from None


def run_stage(recipe: Recipe, run_dir: Path, name: str, force: bool = False, log: Callable[[str], None] | None = None) -> dict:
    """Run one stage unless its manifest is current; return its manifest."""
    stage = get_stage(name)
    log = log or (lambda message: print(message, file=sys.stderr))
    out = run_dir / stage.name
    _not_a_file(run_dir)
    fp = fingerprint(recipe, run_dir, stage)  # raises if an earlier stage is missing
    for name in stage.needs:  # what it will read is intact, before anything of its own is discarded
        check_outputs(run_dir / name)
    if not force and is_current(recipe, run_dir, stage):
        manifest = read_manifest(out)
        check_outputs(out, manifest)
        log(f"[{stage.name}] up to date, skipped")
        return manifest
    module_name, function_name = stage.entry.split(":")
    function = getattr(importlib.import_module(module_name), function_name)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 alone keeps the folder and writes the manifest
        context = StageContext(recipe=recipe, run_dir=run_dir, stage=stage, fingerprint=fp, resuming=True, log=lambda message: None)
        return {"stage": stage.name, "figures": recorded_figures(stage, function(context))}
    _writable(run_dir)
    try:
        return _run(recipe, run_dir, stage, fp, function, force, log)
    except OSError as error:
        if error.errno in DISK_ERRORS:
            raise disk_error(error, out) from None
        raise


def _run(recipe: Recipe, run_dir: Path, stage: Stage, fp: str, function: Callable, force: bool, log: Callable[[str], None]) -> dict:
    out = run_dir / stage.name
    inputs = stage_inputs(recipe, run_dir, stage)
    recorded = _recorded(out)
    resuming = not force and _same_lineage(recorded, inputs, stage)
    if not resuming and out.exists():
        if not force:
            _refuse_to_discard(stage, out, recorded, inputs, run_dir)
        if any(out.iterdir()):
            log(f"[{stage.name}] {'--force' if force else 'its settings or inputs changed'}: the earlier work in {out} is discarded")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    if resuming and stage.kept and (out / MANIFEST).is_file():  # a finished stage resumed for an adjustable change keeps
        check_outputs(out, only=stage.kept)  # its kept work only when intact
    (out / MANIFEST).unlink(missing_ok=True)  # and is unfinished again
    (out / STARTED).write_text(json.dumps({"inputs": inputs}))
    log(f"[{stage.name}] {'resuming' if resuming else 'running'}: {stage.help}")
    context = StageContext(recipe=recipe, run_dir=run_dir, stage=stage, fingerprint=fp, resuming=resuming, log=log)
    t0 = time.time()
    figures = recorded_figures(stage, function(context))
    wall = time.time() - t0
    manifest = {
        "stage": stage.name,
        "fingerprint": fp,
        "recipe": recipe.name,
        "inputs": inputs,
        "figures": figures,
        "outputs": _outputs(out),
        "wall_seconds": round(wall, 3),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "resumed": resuming,
        "versions": versions(),
        "host": host(),
    }
    write_text(out / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False, default=str))
    (out / STARTED).unlink(missing_ok=True)
    log(f"[{stage.name}] done in {wall:.1f}s")
    return manifest


def run_all(recipe: Recipe, run_dir: Path, force: bool = False, until: str | None = None,
            log: Callable[[str], None] | None = None) -> dict[str, dict]:
    """Run every stage in order (to `until`), skipping those whose manifests are current. Costly work
    that the change would discard, or leave without the earlier stages it was made from (a stage
    past `until` too), stops the run before anything runs."""
    if not force and int(os.environ.get("RANK", "0")) == 0:
        planned = planned_inputs(recipe, run_dir)
        last = [s.name for s in STAGES].index(until) if until else len(STAGES) - 1
        for k, stage in enumerate(STAGES):
            out, recorded = run_dir / stage.name, _recorded(run_dir / stage.name)
            inputs = planned[stage.name]
            if k > last:  # not run now, but its work must not lose the earlier stages it was made from
                before = recorded.get("inputs")
                if not isinstance(before, dict) or not isinstance(before.get("fields"), dict):
                    continue
                inputs = {"fields": before["fields"], "upstream": inputs["upstream"]}
            if out.is_dir():
                _refuse_to_discard(stage, out, recorded, inputs, run_dir, planned)
    manifests = {}
    for stage in STAGES:
        manifests[stage.name] = run_stage(recipe, run_dir, stage.name, force=force, log=log)
        if stage.name == until:
            break
    return manifests


def run_dir_for(recipe: Recipe, runs_dir: Path) -> Path:
    return Path(runs_dir) / recipe.name
