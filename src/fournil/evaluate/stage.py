"""The evaluate stage: the run's model(s) on held-out documents, tasks and canaries.

Reads train/final (and with `evaluate.checkpoints: all` every kept checkpoint, for curves over
tokens seen), the tokenizer each model speaks (the run's; the sft model's own when `sft.init_from`
brought one), the corpus's held-out documents and the mixture's token shards (for
the unigram baseline) and canaries. The final model also runs `evaluate.harness_tasks` through
lm-eval when their data is in the local datasets cache (harness/harness.json). Writes results.json
and results.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fournil.corpus.heldout import heldout_samples
from fournil.errors import FournilError
from fournil.evaluate.config import EvaluateConfig
from fournil.evaluate.harness import prepare, run_harness, task_results
from fournil.evaluate.models import Scorable
from fournil.evaluate.report import markdown
from fournil.evaluate.suite import language_scores, task_scores
from fournil.evaluate.tasks import SHIPPED_DIR, Task, load_task
from fournil.evaluate.unigram import Unigram
from fournil.runs import StageContext, file_xxh3

STEP_PREFIX = "step_"


def select_tasks(specs: list[str], languages: list[str], base_dir: Path, log=print) -> list[Task]:
    """The tasks to run; a shipped task in a language the model was not trained on is skipped (one line says which)."""
    tasks, skipped = [], {}
    for spec in specs:
        task = load_task(spec, base_dir)
        shipped = task.folder.resolve() == SHIPPED_DIR.resolve()
        missing = [lang for lang in task.languages if lang not in languages]
        if shipped and missing:
            skipped.setdefault(", ".join(sorted(set(missing))), []).append(task.name)
            continue
        tasks.append(task)
    for missing, names in sorted(skipped.items()):
        log(f"[evaluate] {len(names)} shipped task{'s' * (len(names) > 1)} skipped, the recipe has no {missing}: {', '.join(names)}")
    return tasks


def _step_of(folder: Path) -> int | None:
    suffix = folder.name.removeprefix(STEP_PREFIX)
    return int(suffix) if suffix.isdigit() else None


def checkpoints(train_dir: Path, manifest: dict, which: str) -> list[tuple[str, Path, int | None, int | None]]:
    """(name, folder, step, tokens seen) of the models to evaluate, oldest first, final last."""
    figures = manifest.get("figures") or {}
    found = []
    if which == "all":
        folders = [(_step_of(f), f) for f in (train_dir / "checkpoints").glob(f"{STEP_PREFIX}*")]
        for step, folder in sorted((s, f) for s, f in folders if s is not None and (f / "model.safetensors").is_file()):
            try:
                state = json.loads((folder / "state.json").read_text())
            except (OSError, json.JSONDecodeError):
                state = {}
            found.append((folder.name, folder, state.get("step", step), state.get("tokens_seen", state.get("tokens"))))
    final = train_dir / "final"
    if not (final / "model.safetensors").is_file():
        raise FournilError(f"{final}: no trained model; run `fournil train RECIPE` first")
    steps, tokens = figures.get("steps"), figures.get("tokens_seen", figures.get("tokens"))
    if found and found[-1][2] == steps:
        found.pop()  # the last checkpoint is the final model
    return found + [("final", final, steps, tokens)]


def open_checkpoint(folder: Path, tokenizer, ids: dict[str, int], device: str) -> Scorable:
    """A model to score: train/final (fournil's model format) or a training checkpoint, whose config.json is the bare
    model config written beside its weights by fournil.train.checkpoint."""
    from fournil.model.io import WEIGHTS, empty_model, load_model, pick_device, read_config, read_tensors
    from fournil.model.llama import LlamaConfig

    device = pick_device(device, "evaluate.device")
    config = read_config(folder)
    if "format" in config or "architectures" in config:
        model = load_model(folder, device)
    else:
        model = empty_model(LlamaConfig.from_dict(config), device)
        tied = frozenset({"lm_head.weight"}) if model.config.tie_embeddings else frozenset()
        expected = {name: (t.shape, t.dtype) for name, t in model.state_dict().items() if name not in tied}
        model.load_state_dict(read_tensors(folder / WEIGHTS, expected, device, skip=tied), strict=not tied)
        model.eval()
    return Scorable(model, tokenizer, int(model.config.context_length), ids["bos"], ids["eos"], "fournil")


class Tokenizers:
    """The tokenizer of each model folder (`fournil.model.io.tokenizer_of`), read once: a model tuned from
    `sft.init_from` may speak another tokenizer than the run's checkpoints."""

    def __init__(self, run_tokenizer: Path) -> None:
        self.run_tokenizer, self._read = run_tokenizer, {}

    def folder(self, model_dir: Path) -> Path:
        from fournil.model.io import tokenizer_of

        return tokenizer_of(model_dir, self.run_tokenizer)

    def read(self, folder: Path) -> tuple[Any, dict[str, int | None]]:
        """A tokenizer folder's `tokenizers.Tokenizer` and special ids."""
        from fournil.model.hf import special_tokens
        from fournil.tokenizer import load

        if folder not in self._read:
            self._read[folder] = load(folder), special_tokens(folder)
        return self._read[folder]

    def of(self, model_dir: Path) -> tuple[Any, dict[str, int | None]]:
        """The tokenizer and special ids a model folder's texts are encoded with."""
        return self.read(self.folder(model_dir))

    def speaks_run_tokenizer(self, model_dir: Path) -> bool:
        """Whether the model reads the run's token ids (those of the mixture's canaries)."""
        return file_xxh3(self.folder(model_dir) / "tokenizer.json") == file_xxh3(self.run_tokenizer / "tokenizer.json")


def run(ctx: StageContext) -> dict[str, Any]:
    config: EvaluateConfig = ctx.recipe.evaluate
    languages = list(ctx.recipe.languages)
    tok_dir = ctx.input("tokenizer")
    spoken = Tokenizers(tok_dir)
    tokenizer = spoken.read(tok_dir)[0]
    mixture_dir = ctx.input("mixture")
    texts = heldout_samples(ctx.input("corpus"), languages, config.max_docs_per_language)
    vocab = tokenizer.get_vocab_size()
    unigram_bpb = {lang: Unigram.from_shards(mixture_dir / "shards" / lang, vocab).bits_per_byte(tokenizer, docs)
                   for lang, docs in texts.items() if docs}
    tasks = select_tasks(config.tasks, languages, ctx.recipe.base_dir, ctx.log)
    hub_ready, hub_skipped, task_manager = prepare(config.harness_tasks, ctx.log)  # before scoring: a wrong name fails fast
    results: dict[str, Any] = {"model": ctx.recipe.name, "languages": languages, "checkpoints": []}
    final_scorable = None
    models = checkpoints(ctx.input("train"), ctx.manifest("train"), config.checkpoints)
    tuned = ctx.manifest("sft").get("figures") or {}
    if tuned.get("instruction_tuned"):  # the chat model is the one released: it is scored last, instead of the base model
        base = models.pop() if config.checkpoints == "final" else models[-1]
        models.append(("sft", ctx.input("sft") / "final", tuned.get("steps"), (base[3] or 0) + (tuned.get("tokens") or 0)))
    for name, folder, step, tokens in models:
        ctx.log(f"[evaluate] {name} (step {step}, {tokens} tokens seen)")
        s = open_checkpoint(folder, *spoken.of(folder), config.device)
        results["checkpoints"].append({"name": name, "step": step, "tokens_seen": tokens,
                                       "per_language": language_scores(s, texts, unigram_bpb, config),
                                       "tasks": task_scores(s, tasks, config, ctx.log)})
        final_scorable = s
    if config.harness_tasks:
        name, folder = models[-1][:2]
        chat = config.apply_chat_template if config.apply_chat_template is not None else name == "sft"
        results["harness"] = {"chat_template": chat, "ran": hub_ready, "skipped": hub_skipped}
        if hub_ready:
            ctx.log(f"[evaluate] lm-eval on {name}{' through its chat template' if chat else ''}: {', '.join(hub_ready)}")
            from fournil.model.io import pick_device

            summary = run_harness(folder, hub_ready, ctx.out / "harness", spoken.folder(folder), config.num_fewshot, config.max_examples,
                                  config.batch_size, str(pick_device(config.device, "evaluate.device")), chat=chat,
                                  task_manager=task_manager)
            results["harness"]["version"] = summary["version"]
            results["checkpoints"][-1]["tasks"].update(task_results(summary, languages))
    canaries_path = mixture_dir / "canaries.json"
    if config.memorisation and canaries_path.is_file() and not spoken.speaks_run_tokenizer(models[-1][1]):
        ctx.log("[evaluate] memorisation not measured: the tuned model speaks another tokenizer than the canaries were planted with")
    elif config.memorisation and canaries_path.is_file():
        from fournil.evaluate.memorisation import controls, measure

        canaries = json.loads(canaries_path.read_text())
        if canaries:
            results["memorisation"] = measure(final_scorable, canaries, controls(tokenizer, canaries, ctx.recipe.seed),
                                              results["checkpoints"][-1]["tokens_seen"], config.batch_size)
    if tuned.get("instruction_tuned"):
        results["chat"] = _chat(ctx, config, spoken.folder(ctx.input("sft") / "final"), languages, tasks)
    (ctx.out / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False, default=str))
    (ctx.out / "results.md").write_text(markdown(results), encoding="utf-8")
    reference = config.reference.model_dump() if config.reference else None
    return {**figures(results), "reference": reference}


def _chat(ctx: StageContext, config: EvaluateConfig, tokenizer_dir: Path, languages: list[str], tasks: list) -> dict:
    """The tuned model answering the sft stage's held-out conversations, scored per language, and the
    recipe's shipped translation tasks asked in chat form."""
    from fournil.evaluate.chat import evaluate_chat, read_heldout
    from fournil.model.generate import Generator

    ctx.log("[evaluate] chat: answering held-out conversations")
    generator = Generator(ctx.input("sft") / "final", tokenizer_dir, config.device)
    return evaluate_chat(generator, read_heldout(ctx.input("sft") / "heldout.jsonl"), tasks, languages, config, ctx.log)


def figures(results: dict[str, Any]) -> dict[str, Any]:
    """The manifest's figures: the final model's scores, and the headline of each checkpoint for curves.

    `tasks[task][languages][metric] = value` (languages joined by "-", e.g. "en-fr" for translation
    from English to French) is what the model card reads; `task_details` adds standard errors,
    example counts and shots (and, for lm-eval's tasks, the harness and the dataset); `harness` says which
    of `evaluate.harness_tasks` ran and why each other one did not."""
    final = results["checkpoints"][-1]
    per_language = final["per_language"]
    verdicts = [r.get("beats_unigram") for r in per_language.values() if r.get("beats_unigram") is not None]
    return {
        "per_language": per_language,
        "beats_unigram": bool(verdicts) and all(verdicts),
        "tasks": {name: {"-".join(t["languages"]) or "all": {m: v["value"] for m, v in t["metrics"].items() if isinstance(v, dict)}}
                  for name, t in final["tasks"].items()},
        "task_details": {name: {"languages": t["languages"], "num_fewshot": t["num_fewshot"], "examples": t["examples"],
                                "headline": t["headline"], "metrics": t["metrics"],
                                **{k: t[k] for k in ("harness", "dataset") if t.get(k)}} for name, t in final["tasks"].items()},
        "harness": results.get("harness"),
        "memorisation": (results.get("memorisation") or {}).get("by_repeats"),
        "chat": (results.get("chat") or {}).get("per_language"),
        "chat_translation": (results.get("chat") or {}).get("translation"),
        "checkpoints": [{"name": c["name"], "step": c["step"], "tokens_seen": c["tokens_seen"],
                         "bits_per_byte": {lang: r.get("bits_per_byte") for lang, r in c["per_language"].items()},
                         "tasks": {n: (t["metrics"].get(t["headline"]) or {}).get("value") for n, t in c["tasks"].items()}}
                        for c in results["checkpoints"]],
    }
