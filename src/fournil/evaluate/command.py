"""`fournil evaluate TARGET`: TARGET is a recipe (run the stage) or a model folder (evaluate that model).

A model folder is a fournil checkpoint, a release folder or any transformers causal LM. Its held-out
text comes from a run folder (`--run`: that run's held-out documents, and the unigram baseline when
the model shares the run's tokenizer) or from files (`--text LANG=PATH`). A chat model (`--chat`, on by
default as `is_chat_model` says) also gets the evaluate stage's chat scores: fidelity, chrF and ROUGE-L on
`--run`'s held-out conversations or the shipped seed tasks, and the translation tasks asked in chat form.
Results go to `--out`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from fournil.corpus.documents import read_documents
from fournil.corpus.heldout import heldout_samples
from fournil.errors import FournilError
from fournil.evaluate.config import EvaluateConfig
from fournil.evaluate.models import find_tokenizer_dir, is_transformers_folder, open_model
from fournil.evaluate.report import markdown
from fournil.evaluate.stage import select_tasks
from fournil.evaluate.suite import language_scores, task_scores
from fournil.evaluate.tasks import load_task
from fournil.model.io import tokenizer_of


def config_from_overrides(overrides: list[str]) -> EvaluateConfig:
    """The `evaluate:` settings from `--set evaluate.FIELD=VALUE` overrides (others make no sense without a recipe)."""
    from pydantic import ValidationError

    from fournil.recipe import apply_overrides

    bad = [o for o in overrides if not o.startswith("evaluate.")]
    if bad:
        raise FournilError(f"--set {bad[0]}: evaluating a model folder reads only evaluate.* settings")
    data = apply_overrides({}, overrides).get("evaluate", {})
    try:
        return EvaluateConfig.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        raise FournilError(f"--set evaluate.{'.'.join(map(str, first['loc']))}: {first['msg']}") from None


def read_texts(specs: list[str]) -> dict[str, list[str]]:
    """LANG=PATH files: .jsonl / .jsonl.zst documents, or plain text with documents separated by blank lines."""
    texts: dict[str, list[str]] = {}
    for spec in specs:
        lang, sep, path = spec.partition("=")
        if not sep or not lang or not path:
            raise FournilError(f"--text {spec!r}: expected LANG=PATH, e.g. --text fr=heldout_fr.txt")
        file = Path(path)
        if not file.is_file():
            raise FournilError(f"--text {spec}: no such file")
        if file.name.endswith((".jsonl", ".jsonl.zst")):
            docs = [d.get("text", "") for d in read_documents(file)]
        else:
            try:
                docs = file.read_text(encoding="utf-8").split("\n\n")
            except UnicodeDecodeError:
                raise FournilError(f"--text {spec}: not UTF-8 text") from None
        texts.setdefault(lang, []).extend(d.strip() for d in docs if d.strip())
    return texts


def _run_unigrams(run_dir: Path, tokenizer_dir: Path, texts: dict[str, list[str]], tokenizer) -> dict[str, float]:
    """Unigram baselines from the run's shards, only when the model's tokenizer is the run's."""
    from fournil.evaluate.unigram import Unigram

    ours = tokenizer_dir / "tokenizer.json"
    theirs = run_dir / "tokenizer" / "tokenizer.json"
    if not ours.is_file() or not theirs.is_file():
        return {}
    if hashlib.sha256(ours.read_bytes()).digest() != hashlib.sha256(theirs.read_bytes()).digest():
        return {}
    return {lang: Unigram.from_shards(run_dir / "mixture" / "shards" / lang, tokenizer.get_vocab_size()).bits_per_byte(tokenizer, docs)
            for lang, docs in texts.items() if docs and (run_dir / "mixture" / "shards" / lang).is_dir()}


def _progress(model_dir: Path) -> tuple[int | None, int | None]:
    """(step, tokens seen) of a fournil checkpoint (its state.json) or train/final (the train manifest), else unknown."""
    for path, keys in ((model_dir / "state.json", ("step", "tokens")), (model_dir.parent / "manifest.json", ("steps", "tokens"))):
        if path.is_file() and (path.name == "state.json" or model_dir.name == "final"):
            try:
                data = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            data = data.get("figures", data)
            return data.get(keys[0]), data.get("tokens_seen", data.get(keys[1]))
    return None, None


def _card(model_dir: Path) -> dict:
    """The YAML front matter of the folder's model card (README.md), {} when it has none."""
    import yaml

    path = model_dir / "README.md"
    text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    if not text.startswith("---\n") or "\n---" not in text[4:]:
        return {}
    try:
        front = yaml.safe_load(text[4:text.index("\n---", 4)])
    except yaml.YAMLError:
        return {}
    return front if isinstance(front, dict) else {}


def is_chat_model(model_dir: Path, tokenizer_dir: Path) -> bool:
    """The default of --chat: a folder whose tokenizer_config.json has a chat_template, except a fournil base model.
    Every fournil tokenizer carries the same ChatML template and every export stops at <|im_end|>, base models' included,
    so for a fournil model (fournil's template, or a card tagged `fournil`) only these tell: its card has the
    `conversational` tag (the release of a tuned run does), or it is a checkpoint in an sft stage folder."""
    from fournil.tokenizer.chat import CHAT_TEMPLATE

    settings = tokenizer_dir / "tokenizer_config.json"
    try:
        template = json.loads(settings.read_text(encoding="utf-8")).get("chat_template")
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False
    tags = _card(model_dir).get("tags") or []
    if not template or "conversational" in tags:
        return bool(template)
    if template != CHAT_TEMPLATE and "fournil" not in tags:
        return True  # another model's own chat template
    return not is_transformers_folder(model_dir) and \
        any(parent.name == "sft" and (parent / "manifest.json").is_file() for parent in model_dir.resolve().parents[:3])


def _chat(model_dir: Path, tok_dir: Path, run_dir: Path | None, languages: list[str], tasks: list, config: EvaluateConfig,
          device: str, log) -> dict:
    """The stage's chat scores for a model folder: on the run's held-out conversations when --run has them, else on
    the shipped seed tasks of its languages."""
    from fournil.evaluate.chat import evaluate_chat, read_heldout, seed_conversations
    from fournil.model.generate import Generator

    heldout = run_dir / "sft" / "heldout.jsonl" if run_dir is not None else None
    conversations = read_heldout(heldout) if heldout is not None and heldout.is_file() else seed_conversations(languages)
    log(f"[evaluate] chat: answering {'held-out conversations of ' + str(run_dir) if heldout and heldout.is_file() else 'the shipped seed tasks'}")
    return evaluate_chat(Generator(model_dir, tok_dir, device), conversations, tasks, languages, config, log)


def evaluate_folder(model_dir: Path, out: Path, config: EvaluateConfig, run_dir: Path | None = None,
                    text_specs: list[str] | None = None, tasks: list[str] | None = None,
                    tokenizer_dir: Path | None = None, device: str = "cpu", log=print, chat: bool | None = None) -> dict:
    """Evaluate one model folder; write out/results.json and results.md; return the results. A chat model's
    languages, without held-out text, are its card's (`language:`) or those of the given tasks."""
    texts = read_texts(text_specs or [])
    if run_dir is not None:
        corpus = run_dir / "corpus"
        if not (corpus / "heldout").is_dir():
            raise FournilError(f"--run {run_dir}: no corpus/heldout folder; give a run folder made by `fournil run`")
        languages = sorted(p.name for p in (corpus / "heldout").iterdir() if p.is_dir())
        for lang, docs in heldout_samples(corpus, languages, config.max_docs_per_language).items():
            texts.setdefault(lang, []).extend(docs)
    texts = {lang: docs[:config.max_docs_per_language] for lang, docs in texts.items()}
    spoken = tokenizer_of(Path(model_dir), run_dir / "tokenizer") if run_dir else None  # the folder's own, else the run's
    tok_dir = find_tokenizer_dir(Path(model_dir), tokenizer_dir or spoken)
    chat = is_chat_model(Path(model_dir), tok_dir) if chat is None else chat
    s = open_model(Path(model_dir), tok_dir, device)
    unigrams = _run_unigrams(run_dir, tok_dir, texts, s.tokenizer) if run_dir is not None else {}
    card_languages = [str(lang) for lang in _card(Path(model_dir)).get("language") or []] if chat and not texts else []
    if tasks is None:  # the recipe defaults: shipped tasks in the languages of the text
        chosen = select_tasks(config.tasks, sorted(texts) or card_languages, Path.cwd(), log)
    else:
        chosen = [load_task(spec, Path.cwd()) for spec in tasks]
    languages = sorted(texts) or card_languages or sorted({lang for task in chosen for lang in task.languages})
    if not texts and not chosen and not (chat and languages):
        raise FournilError("nothing to evaluate: give held-out text (--run RUN_DIR or --text LANG=PATH) or --tasks")
    step, tokens = _progress(Path(model_dir))
    results = {"model": str(model_dir), "kind": s.kind, "languages": sorted(texts),
               "checkpoints": [{"name": Path(model_dir).name, "step": step, "tokens_seen": tokens,
                                "per_language": language_scores(s, texts, unigrams, config),
                                "tasks": task_scores(s, chosen, config, log)}]}
    if chat:
        results["chat"] = _chat(Path(model_dir), tok_dir, run_dir, languages, chosen, config, device, log)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False, default=str))
    (out / "results.md").write_text(markdown(results), encoding="utf-8")
    return results


def harness_backend(harness: str | None) -> str | None:
    """`lm-eval` (its hf backend) or `lm-eval:MODEL` (another lm-eval backend, e.g. vllm) → the backend's name."""
    if harness is None:
        return None
    name, sep, model = harness.partition(":")
    if name != "lm-eval" or (sep and not model):
        raise FournilError(f"--harness {harness!r}: give lm-eval, or lm-eval:MODEL for another lm-eval backend (e.g. lm-eval:vllm)")
    return model or "hf"


CHAT_TASKS = ("chat_heldout", "chat_translation")


def chat_tasks(tasks: list[str], out: Path, config: EvaluateConfig, conversations: list[dict], translation_tasks: list,
               model_dir: Path, tokenizer_dir: Path) -> list[str]:
    """`chat_heldout` and `chat_translation` among --tasks become lm-eval task files in OUT/<name>/, prompted and decoded
    as the evaluate stage's chat scores are: the conversations (a run's held-out ones, or the shipped seed tasks), one
    task per language, and the given translation tasks asked in chat form, one per direction."""
    from fournil.evaluate.chat import lm_eval_tasks, translation_lm_eval_tasks
    from fournil.model.generate import Prompter

    files: dict[str, list[Path]] = {}
    if "chat_heldout" in tasks:
        files["chat_heldout"], _ = lm_eval_tasks(conversations, out / "chat_heldout", config.max_examples or 100, config.max_new_tokens)
    if "chat_translation" in tasks:  # which requests fit is the model's tokenizer's and context's call (no weights read)
        files["chat_translation"] = translation_lm_eval_tasks(Prompter(model_dir, tokenizer_dir), translation_tasks,
                                                              out / "chat_translation", config.max_examples or 100, config.max_new_tokens)
    return [t for spec in tasks for t in ([str(f) for f in files[spec]] if spec in files else [spec])]


def folder_chat_tasks(tasks: list[str], model_dir: Path, out: Path, config: EvaluateConfig, run_dir: Path | None,
                      tokenizer_dir: Path | None) -> list[str]:
    """`chat_heldout` / `chat_translation` for a model folder: on `--run`'s held-out conversations and languages when
    given, else on the shipped seed tasks and translation tasks of the languages its card names."""
    from fournil.evaluate.chat import read_heldout, seed_conversations

    if not any(name in tasks for name in CHAT_TASKS):
        return tasks
    heldout = run_dir / "sft" / "heldout.jsonl" if run_dir is not None else None
    if heldout is not None and heldout.is_file():
        conversations = read_heldout(heldout)
        languages = sorted({c["lang"] for c in conversations})
    else:
        languages = sorted(str(lang) for lang in _card(model_dir).get("language") or [])
        conversations = seed_conversations(languages)
    if not languages:
        asked = next(name for name in CHAT_TASKS if name in tasks)
        raise FournilError(f"--tasks {asked}: {model_dir} names no languages; give --run RUN_DIR of a tuned run, "
                           "or a folder whose model card lists its `language:`")
    return chat_tasks(tasks, out, config, conversations, select_tasks(config.tasks, languages, Path.cwd(), lambda *_: None),
                      model_dir, find_tokenizer_dir(model_dir, tokenizer_dir))


def _harness_on_run(recipe, folder: Path, tasks: list[str], out: Path, tokenizer_dir: Path | None, device: str,  # noqa: ANN001
                    backend: str, dtype: str, chat: bool | None) -> Path:
    """lm-eval on the model the stage would score: the sft stage's chat model when it tuned one (prompted through its
    chat template unless --no-chat), else the base model; chat tasks are written from the run's records."""
    from fournil.evaluate.harness import run_harness
    from fournil.runs import read_manifest

    tuned = (folder / "sft" / "manifest.json").is_file() and \
        bool((read_manifest(folder / "sft").get("figures") or {}).get("instruction_tuned"))
    model = folder / ("sft" if tuned else "train") / "final"
    tokenizer_dir = find_tokenizer_dir(model, tokenizer_dir)
    asked = [name for name in CHAT_TASKS if name in tasks]
    if asked and not tuned:
        raise FournilError(f"--tasks {asked[0]}: {folder} has no tuned chat model; give the recipe an sft: section and run it")
    if asked:
        from fournil.evaluate.chat import read_heldout

        translations = select_tasks(recipe.evaluate.tasks, list(recipe.languages), recipe.base_dir, lambda *_: None)
        tasks = chat_tasks(tasks, out, recipe.evaluate, read_heldout(folder / "sft" / "heldout.jsonl"), translations, model, tokenizer_dir)
    run_harness(model, tasks, out, tokenizer_dir, recipe.evaluate.num_fewshot, recipe.evaluate.max_examples, recipe.evaluate.batch_size,
                device, backend, dtype, chat=tuned if chat is None else chat)
    return out


def main(target: Path, overrides: list[str], runs_dir: Path, force: bool, run_dir: Path | None, text_specs: list[str],
         tasks: str | None, harness: str | None, out: Path | None, tokenizer_dir: Path | None, device: str,
         proxy: str | None = None, dtype: str = "float32", chat: bool | None = None) -> Path:
    """The CLI: a recipe runs the stage, a folder is a model; with --harness, lm-eval runs instead, on the model the
    stage would score (the sft stage's chat model when it tuned one, prompted through its chat template unless
    --no-chat). Returns the results folder."""
    from fournil.model.io import pick_device

    task_list = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None
    device = str(pick_device(device, "--device"))
    backend = harness_backend(harness)
    if target.is_file():
        from fournil.recipe import load_recipe
        from fournil.runs import run_dir_for, run_stage

        recipe = load_recipe(target, overrides, proxy)
        folder = run_dir_for(recipe, runs_dir)
        if harness:
            return _harness_on_run(recipe, folder, task_list or [], out or folder / "harness", tokenizer_dir, device, backend, dtype, chat)
        run_stage(recipe, folder, "evaluate", force=force)
        return folder / "evaluate"
    if not target.is_dir():
        raise FournilError(f"{target}: neither a recipe file nor a model folder")
    config = config_from_overrides(overrides)
    out = out or Path(f"evaluate-{target.resolve().name}")
    if harness:
        from fournil.evaluate.harness import run_harness

        task_list = folder_chat_tasks(task_list or [], target, out, config, run_dir, tokenizer_dir)
        if chat is None:
            chat = is_chat_model(target, find_tokenizer_dir(target, tokenizer_dir))
        run_harness(target, task_list or [], out, tokenizer_dir, config.num_fewshot, config.max_examples, config.batch_size, device,
                    backend, dtype, chat=chat)
    else:
        evaluate_folder(target, out, config, run_dir, text_specs, task_list, tokenizer_dir, device, chat=chat)
    return out
