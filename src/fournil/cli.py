"""The `fournil` command: `run` for the whole bake, one command per stage, and tools around them.

User mistakes (FournilError) are printed as one line without a traceback, with exit status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from fournil.errors import FournilError

COMMAND_ORDER = ("run", "plan", "sweep", "corpus", "tokenizer", "mixture", "train", "sft", "evaluate", "release", "generate", "chat", "gguf", "instruct")
OWN_COMMANDS = ("tokenizer", "evaluate")  # stages whose command does more than run the stage (defined below)


def _untyped_flags(command, ctx) -> None:  # noqa: ANN001
    """A flag takes no value, so its help shows no type (typer's would print `--force <bool>`)."""
    for param in command.get_params(ctx):  # with --help, which click adds (and keeps) here
        if getattr(param, "is_flag", False):
            param.metavar = ""


class _InBakeOrder(TyperGroup):
    """`fournil --help` lists the commands in the order of a bake, not of their definition; flags show no type."""

    def list_commands(self, ctx) -> list[str]:  # noqa: ANN001
        return sorted(self.commands, key=lambda name: COMMAND_ORDER.index(name) if name in COMMAND_ORDER else len(COMMAND_ORDER))

    def get_command(self, ctx, name):  # noqa: ANN001
        command = super().get_command(ctx, name)
        if command is not None:
            _untyped_flags(command, ctx)
        return command

    def format_help(self, ctx, formatter) -> None:  # noqa: ANN001
        _untyped_flags(self, ctx)
        super().format_help(ctx, formatter)


app = typer.Typer(
    cls=_InBakeOrder,
    help="Bake open language models for languages other than English, from one recipe.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

RecipeArg = Annotated[Path, typer.Argument(help="the recipe YAML file", show_default=False)]
SetOpt = Annotated[list[str], typer.Option("--set", "-s", help="override a recipe field, e.g. --set train.max_steps=50 (repeatable)")]
RunsOpt = Annotated[Path, typer.Option("--runs-dir", help="folder that holds run folders; the run goes to RUNS_DIR/<recipe name>")]
ForceOpt = Annotated[bool, typer.Option("--force", help="run afresh even if the stage's manifest is up to date, discarding its earlier work")]
ProxyOpt = Annotated[bool, typer.Option("--proxy", help="the recipe's data logic at laptop scale, in RUNS_DIR/<name>-proxy (docs/recipe.md)")]
ProxySizeOpt = Annotated[str, typer.Option("--proxy-size", help="with --proxy: small (the shipped sample on a CPU in minutes) or tiny (tests)")]


def _load(recipe: Path, overrides: list[str] | None, proxy: bool = False, proxy_size: str = "small"):
    from fournil.recipe import load_recipe

    return load_recipe(recipe, overrides or [], proxy_size if proxy else None)


@app.command()
def run(recipe: RecipeArg, set_: SetOpt = None, runs_dir: RunsOpt = Path("runs"), force: ForceOpt = False,
        until: Annotated[str | None, typer.Option(help="stop after this stage")] = None,
        proxy: ProxyOpt = False, proxy_size: ProxySizeOpt = "small") -> None:
    """Bake the whole recipe: corpus, tokenizer, mixture, train, evaluate, release.

    Stages whose inputs did not change since their last run are skipped; an interrupted stage resumes.
    """
    from fournil.runs import STAGE_NAMES, run_all, run_dir_for

    if until is not None and until not in STAGE_NAMES:
        raise FournilError(f"--until {until!r}: stages are {', '.join(STAGE_NAMES)}")
    r = _load(recipe, set_, proxy, proxy_size)
    run_dir = run_dir_for(r, runs_dir)
    _check_plan(r, run_dir)
    manifests = run_all(r, run_dir, force=force, until=until)
    if "evaluate" in manifests:
        typer.echo(_bits_per_byte_table(manifests["evaluate"]["figures"].get("per_language", {})))
    if "release" in manifests:
        typer.echo(f"model card: {run_dir / 'release' / 'README.md'}")
    typer.echo(f"run folder: {run_dir}")


def _check_plan(recipe, run_dir: Path) -> None:
    """Print the plan's short form; refuse, before any work, a plan that cannot fit in memory."""
    from fournil import plan

    made = plan.make(recipe, run_dir)
    typer.echo(plan.short(made), err=True)
    plan.refuse_if_unfit(made)


@app.command(name="plan")
def plan_command(recipe: RecipeArg, set_: SetOpt = None, runs_dir: RunsOpt = Path("runs"),
                 proxy: ProxyOpt = False, proxy_size: ProxySizeOpt = "small",
                 json_out: Annotated[Path | None, typer.Option("--json", help="also write the plan as JSON to this file")] = None) -> None:
    """What the recipe will cost before it runs: parameters, tokens, epochs, memory per GPU, GPU-hours, energy, CO2.

    Token counts come from the run folder's mixture stage when it has run, else are estimated from the source files.
    """
    import json

    from fournil import plan
    from fournil.runs import run_dir_for

    r = _load(recipe, set_, proxy, proxy_size)
    made = plan.make(r, run_dir_for(r, runs_dir))
    typer.echo(plan.full(made))
    if json_out is not None:
        json_out.write_text(json.dumps(made, indent=2, default=str) + "\n", encoding="utf-8")


@app.command()
def sweep(
    recipe: Annotated[Path, typer.Argument(help="a recipe, or a sweep file (a `sweep:` section naming its recipe; docs/sweep.md)", show_default=False)],
    vary: Annotated[list[str] | None, typer.Option("--vary", help="FIELD=V1,V2,...: a recipe field and its values, read as YAML; repeatable (every combination)")] = None,
    zip_: Annotated[bool, typer.Option("--zip", help="the i-th values of every --vary together, instead of every combination")] = False,
    seeds: Annotated[int | None, typer.Option(help="bake each setting with N training seeds (train.seed), for error bars")] = None,
    set_: SetOpt = None,
    runs_dir: Annotated[Path, typer.Option("--runs-dir", help="folder that holds run folders; the sweep goes to RUNS_DIR/<sweep name>/<point>/")] = Path("runs"),
    proxy: Annotated[bool, typer.Option("--proxy", help="bake every point at proxy scale: the recipe's data logic at laptop scale (docs/recipe.md)")] = False,
    proxy_size: ProxySizeOpt = "small",
    name: Annotated[str | None, typer.Option(help="names the sweep folder; default: the recipe's name and the varied fields")] = None,
    until: Annotated[str | None, typer.Option(help="stop every point after this stage (the comparison needs evaluate)")] = None,
    jobs: Annotated[int, typer.Option(min=1, help="points run at once on this machine, each in its own process")] = 1,
    executor: Annotated[str | None, typer.Option(help="local (this machine), slurm (a job per task, sbatch) or ray (a Ray task per task); default: the sweep file's, else local")] = None,
    executor_option: Annotated[list[str] | None, typer.Option("--executor-option", help="KEY=VALUE for slurm or ray: partition, time, cpus_per_task, gpus, processes, ... (docs/sweep.md); repeatable")] = None,
    point: Annotated[str | None, typer.Option(help="run this point alone, taking the stages it shares from points that finished them")] = None,
    commands: Annotated[bool, typer.Option("--commands", help="print each task's command and the tasks it waits for (jobs for a cluster); run nothing")] = False,
    report: Annotated[bool, typer.Option("--report", help="only write the comparison from what the points' folders hold")] = False,
) -> None:
    """Bake many points of one recipe, sharing every stage a point does not change, and compare them.

    Each point is its own run folder, named after its values; a stage whose inputs points share runs once and is hard-linked into the others' folders.

    Writes RUNS_DIR/<sweep>/sweep.json, sweep.md and sweep.html; a killed sweep resumes where it stopped when run again.
    """
    from fournil import plan
    from fournil.sweep import config as sweep_config
    from fournil.sweep import execute, results
    from fournil.sweep import report as sweep_report
    from fournil.sweep.points import expand

    alone = point is not None  # one task of a sweep: its --until cuts the point's stages, not the sweep's
    config, base = sweep_config.build(recipe, vary or [], seeds, zip_, proxy_size if proxy else None, set_ or [], name,
                                      None if alone else until, executor, executor_option or [])
    if config.executor != "local" and jobs > 1:
        raise FournilError(f"--jobs is for the local executor; with {config.executor}, the cluster runs the points at once")
    made = expand(config, base, runs_dir)
    if alone:
        execute.run_point(made, made.point(point), until or made.last_stage, lambda message: typer.echo(message, err=True))
        return
    unfit = []
    for p in made.points:
        try:
            plan.refuse_if_unfit(plan.make(p.recipe, made.folder / p.name))
        except FournilError as error:
            unfit.append(f"{p.name}: {error}")
    if unfit:
        raise FournilError(f"sweep {made.name}: {len(unfit)} of {len(made.points)} points do not fit:\n  " + "\n  ".join(unfit))
    made.folder.mkdir(parents=True, exist_ok=True)
    sweep_config.write(made.config, made.folder / execute.SWEEP_FILE)
    how = f"fournil sweep {made.folder / execute.SWEEP_FILE} --runs-dir {runs_dir}"
    if commands:
        typer.echo("task\tafter\tcommand")
        for line in execute.commands(made, runs_dir):
            typer.echo(line)
        typer.echo(f"-\tall\t{how} --report")
        return
    errors = {}
    if not report:
        planned = ", ".join(f"{stage} {n}" + (f" (shards encoded {made.kept_runs(stage)})" if stage == "mixture" else "")
                            for stage, n in made.runs_per_stage().items() if n)
        typer.echo(f"sweep {made.name}: {len(made.points)} points in {made.folder}; stage runs: {planned}", err=True)
        say = lambda message: typer.echo(message, err=True)  # noqa: E731
        if made.config.executor == "slurm":
            from fournil.sweep import on_slurm

            errors = on_slurm.run(made, runs_dir, made.config.executor_options, say)
        elif made.config.executor == "ray":
            from fournil.sweep import on_ray

            errors = on_ray.run(made, runs_dir, made.config.executor_options, say)
        else:
            errors = execute.run(made, runs_dir, jobs, say)
    data = results.collect(made, errors)
    sweep_report.write(data, made.folder, how)
    header, body = sweep_report.rows(data)
    typer.echo("\n".join(sweep_report.table(header, body)))
    typer.echo(f"comparison: {made.folder / 'sweep.html'}")
    unfinished = [p for p in data["points"] if p["status"] != "finished"]
    if unfinished and not report:
        raise FournilError(f"{len(unfinished)} of {len(data['points'])} points did not finish ("
                           + "; ".join(f"{p['name']}: {p['error'] or 'not run'}" for p in unfinished[:3])
                           + "); fix them and run the same command again: finished points are kept")


def _bits_per_byte_table(per_language: dict) -> str:
    """The bake's headline: held-out bits per byte per language next to the unigram baseline."""
    lines = [f"{'language':<10}{'bits/byte':>10}{'unigram':>10}  beats unigram"]
    for lang, f in per_language.items():
        model, unigram = f.get("bits_per_byte"), f.get("unigram_bits_per_byte")
        if model is None or unigram is None:
            lines.append(f"{lang:<10}{'not recorded':>20}")
            continue
        lines.append(f"{lang:<10}{model:>10.3f}{unigram:>10.3f}  {'yes' if model < unigram else 'NO'}")
    return "\n".join(lines)


def _stage_command(name: str, help_text: str):
    def command(recipe: RecipeArg, set_: SetOpt = None, runs_dir: RunsOpt = Path("runs"), force: ForceOpt = False,
                proxy: ProxyOpt = False, proxy_size: ProxySizeOpt = "small") -> None:
        from fournil.runs import run_dir_for, run_stage

        r = _load(recipe, set_, proxy, proxy_size)
        run_stage(r, run_dir_for(r, runs_dir), name, force=force)

    command.__doc__ = f"{help_text[0].upper()}{help_text[1:]}.\n\nReads earlier stages from the run folder; writes RUNS_DIR/<name>/{name}/ with a manifest."
    return command


def _register_stages() -> None:
    from fournil.runs import STAGES

    for stage in STAGES:
        if stage.name not in OWN_COMMANDS:
            app.command(name=stage.name)(_stage_command(stage.name, stage.help))


_register_stages()


ModelDirArg = Annotated[Path, typer.Argument(help="a fournil model folder (runs/<name>/train/final), a release folder or a Hugging Face Llama export", show_default=False)]
TokenizerOpt = Annotated[Path | None, typer.Option(help="tokenizer folder; default: next to the model or in its run folder")]
# generate samples as chat does: greedy decoding makes a small model repeat itself (--temperature 0 for greedy)
MaxNewTokensOpt = Annotated[int, typer.Option(help="at most this many new tokens")]
TemperatureOpt = Annotated[float, typer.Option(help="sampling temperature; 0 = greedy (argmax), higher = more varied")]
TopKOpt = Annotated[int, typer.Option(help="sample among the k most likely tokens only; 0 = all")]
TopPOpt = Annotated[float, typer.Option(help="sample among the most likely tokens whose probabilities first reach p; 1 = all")]
RepetitionOpt = Annotated[float, typer.Option(help="> 1 makes tokens already in the text less likely; 1 = off")]
SeedOpt = Annotated[int | None, typer.Option(help="random seed, for the same text on every run; default: a new one each run")]
DeviceOpt = Annotated[str, typer.Option(help="auto (the GPU when one is visible), cpu or cuda")]


def _sampling(max_new_tokens: int, temperature: float, top_k: int, top_p: float, repetition_penalty: float, stop: list[str] | None, seed: int | None):
    from fournil.model.generate import Sampling

    return Sampling(max_new_tokens, temperature, top_k, top_p, repetition_penalty, tuple(stop or ()), seed)


@app.command()
def generate(model_dir: ModelDirArg, prompt: Annotated[str, typer.Option(help="the text to continue")],
             max_new_tokens: MaxNewTokensOpt = 200, temperature: TemperatureOpt = 0.7, top_k: TopKOpt = 50,
             top_p: TopPOpt = 0.9, repetition_penalty: RepetitionOpt = 1.1,
             stop: Annotated[list[str] | None, typer.Option(help="stop before this text (repeatable)")] = None,
             seed: SeedOpt = None, tokenizer: TokenizerOpt = None, device: DeviceOpt = "auto") -> None:
    """Continue a prompt with a model, streaming the text to the terminal (sampling as chat does)."""
    from fournil.model.generate import Generator

    settings = _sampling(max_new_tokens, temperature, top_k, top_p, repetition_penalty, stop, seed)
    generator = Generator(model_dir, tokenizer, device)
    sys.stdout.write(prompt)
    for piece in generator.stream(prompt, settings):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")


@app.command()
def chat(model_dir: ModelDirArg, max_new_tokens: MaxNewTokensOpt = 400, temperature: TemperatureOpt = 0.7, top_k: TopKOpt = 50,
         top_p: TopPOpt = 0.9, repetition_penalty: RepetitionOpt = 1.1,
         system: Annotated[str | None, typer.Option(help="a system message")] = None,
         seed: SeedOpt = None, tokenizer: TokenizerOpt = None, device: DeviceOpt = "auto") -> None:
    """Talk with a model in the terminal (empty line or Ctrl-D to quit)."""
    from fournil.model.generate import Generator

    generator = Generator(model_dir, tokenizer, device)
    messages = [{"role": "system", "content": system}] if system else []
    while True:
        try:
            line = input("> ").strip()
        except EOFError:
            break
        if not line:
            break
        messages.append({"role": "user", "content": line})
        prompt, stops = generator.chat_prompt(messages)
        settings = _sampling(max_new_tokens, temperature, top_k, top_p, repetition_penalty, list(stops), seed)
        reply = []
        for piece in generator.stream(prompt, settings):
            reply.append(piece)
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        messages.append({"role": "assistant", "content": "".join(reply).strip()})


@app.command()
def gguf(model_dir: ModelDirArg,
         outtype: Annotated[str, typer.Option(help="weights: f32, f16, q8_0 or q4_0 (norms stay f32)")] = "q8_0",
         out: Annotated[Path | None, typer.Option(help="the GGUF file; default: MODEL_DIR/<name>-<TYPE>.gguf")] = None,
         name: Annotated[str | None, typer.Option(help="the model's name in the file (general.name); default: the folder's")] = None,
         tokenizer: TokenizerOpt = None) -> None:
    """Write a GGUF file for llama.cpp: weights, tokenizer (with the pre-tokenizer llama.cpp knows it by) and chat template."""
    from fournil.model.gguf_export import export_gguf, file_name

    name = name or model_dir.resolve().name
    path = export_gguf(model_dir, out or model_dir / file_name(name, outtype), tokenizer, outtype, name)
    typer.echo(f"gguf: {path}")


def _stage_with_tools(name: str, tools: typer.Typer) -> None:
    """Make `fournil NAME RECIPE ...` run the stage and `fournil NAME TOOL ...` one of `tools`' commands."""
    from fournil.runs import get_stage

    class StageGroup(_InBakeOrder):
        def parse_args(self, ctx, args):
            if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
                args = ["stage", *args]  # not a tool's name: the recipe of the stage command
            return super().parse_args(ctx, args)

        def format_help(self, ctx, formatter):
            _untyped_flags(self.commands["stage"], ctx)
            self.commands["stage"].format_help(ctx, formatter)

    stage = get_stage(name)
    command = _stage_command(name, stage.help)
    listed = ", ".join(f"`fournil {name} {c.name or c.callback.__name__} --help`" for c in tools.registered_commands)
    command.__doc__ += f"\n\nTools: {listed}."
    group = typer.Typer(cls=StageGroup, no_args_is_help=True, help=f"{stage.help[0].upper()}{stage.help[1:]}.")
    group.command(name="stage", hidden=True)(command)
    for tool in tools.registered_commands:
        group.registered_commands.append(tool)
    app.add_typer(group, name=name)


tokenizer_tools = typer.Typer()


@tokenizer_tools.command("report")
def tokenizer_report(
    tokenizer: Annotated[str, typer.Argument(help="tokenizer folder, tokenizer.json, SentencePiece .model, .tiktoken, tekken .json, or gpt2 / mistral-v1 / tekken", show_default=False)],
    reference: Annotated[list[str] | None, typer.Option("--reference", "-r", help="a tokenizer to compare with (same forms as TOKENIZER, or NAME=PATH); repeatable")] = None,
    corpus: Annotated[Path | None, typer.Option(help="a run folder or corpus stage folder: measure on its held-out documents")] = None,
    text: Annotated[list[str] | None, typer.Option(help="LANG=PATH: plain text or .jsonl[.zst] documents in LANG; repeatable")] = None,
    parallel: Annotated[list[Path] | None, typer.Option(help="TSV (header `source doc en fr`) or JSONL pairs, for parity against English; repeatable")] = None,
    eval_chars: Annotated[int, typer.Option(help="characters per language to measure on")] = 2_000_000,
    eval_pairs: Annotated[int, typer.Option(help="parallel pairs per language")] = 5000,
    out: Annotated[Path | None, typer.Option(help="also write tokenizer_report.json and .md in this folder")] = None,
) -> None:
    """Measure a tokenizer and references per language: fertility, split words, bytes per token, parity; print the table."""
    from fournil.tokenizer.report import markdown, report_on_files, write_report

    report = report_on_files(tokenizer, reference or [], text or [], corpus, parallel or [], eval_chars, eval_pairs)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_report(report, out)
    typer.echo(markdown(report))


_stage_with_tools("tokenizer", tokenizer_tools)


@app.command()
def evaluate(
    target: Annotated[Path, typer.Argument(help="a recipe (evaluate its run) or a model folder: checkpoint, release or transformers causal LM", show_default=False)],
    set_: SetOpt = None, runs_dir: RunsOpt = Path("runs"), force: ForceOpt = False,
    run: Annotated[Path | None, typer.Option(help="model folder: score the held-out documents of this run folder")] = None,
    text: Annotated[list[str] | None, typer.Option(help="model folder: LANG=PATH held-out text (.txt, .jsonl[.zst]); repeatable")] = None,
    tasks: Annotated[str | None, typer.Option(help="comma-separated tasks: shipped names or task YAML paths (lm-eval names with --harness; chat_heldout, chat_translation for a chat model)")] = None,
    harness: Annotated[str | None, typer.Option(help="'lm-eval': run lm-evaluation-harness on the exported model; 'lm-eval:MODEL' with another lm-eval backend, e.g. lm-eval:vllm")] = None,
    dtype: Annotated[str, typer.Option(help="--harness: the weights' type, float32, bfloat16 or float16")] = "float32",
    chat: Annotated[bool | None, typer.Option("--chat/--no-chat", help="a chat model: add its chat scores (model folder), prompt through its chat template (--harness: lm-eval's --apply_chat_template); on by default for a tuned run's recipe or a chat model folder (docs/evaluate.md)", show_default=False)] = None,
    out: Annotated[Path | None, typer.Option(help="model folder: results folder (default evaluate-<folder name>)")] = None,
    tokenizer: TokenizerOpt = None,
    device: Annotated[str, typer.Option(help="model folder: auto (the GPU when one is visible), cpu or cuda")] = "auto",
    proxy: ProxyOpt = False, proxy_size: ProxySizeOpt = "small",
) -> None:
    """Bits per byte per language on held-out documents, tasks and memorisation.

    With a recipe, runs the evaluate stage of RUNS_DIR/<name>/. With a model folder, evaluates that model
    on --run's held-out documents or --text files, and writes results.json and results.md to --out.
    """
    from fournil.evaluate.command import main as evaluate_main

    folder = evaluate_main(target, set_ or [], runs_dir, force, run, text or [], tasks, harness, out, tokenizer, device,
                           proxy_size if proxy else None, dtype, chat)
    typer.echo(f"results: {folder}")


instruct_app = typer.Typer(cls=_InBakeOrder, no_args_is_help=True, help="Multilingual self-instruct: instruction data for `sft` from seed tasks and a teacher model.")


@instruct_app.command("generate")
def instruct_generate(
    config: Annotated[Path, typer.Argument(help="a self-instruct config YAML, or a recipe with an instruct: section (see docs/instruct.md)",
                                           show_default=False)],
    set_: Annotated[list[str], typer.Option("--set", "-s", help="override a field, e.g. --set teacher.concurrency=16 in a config, "
                                                                "--set instruct.teacher.concurrency=16 in a recipe (repeatable)")] = None,
    force: Annotated[bool, typer.Option("--force", help="discard what the output folder holds and start afresh")] = False,
) -> None:
    """Generate instruction data with a teacher: an OpenAI-compatible endpoint or a local model folder.

    Writes examples.jsonl (`messages` format, for sft), dropped.jsonl, answers.jsonl and stats.json to the config's (or the recipe's instruct.output) folder; an interrupted run goes on where it stopped, sending no request twice.
    """
    from fournil.instruct.config import load_config
    from fournil.instruct.generate import generate as run_instruct

    cfg = load_config(config, set_ or [])
    stats = run_instruct(cfg, force=force)
    typer.echo(f"{'language':<10}{'kept':>7}{'dropped':>9}{'requests':>10}  top drop reasons")
    for lang, s in stats["languages"].items():
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(s["dropped"].items(), key=lambda item: -item[1])[:3])
        typer.echo(f"{lang:<10}{s['kept']:>7}{sum(s['dropped'].values()) + s['unparsable_answers']:>9}{s['requests']:>10}  {reasons}"
                   + ("  (gave up: max_requests_per_language reached)" if s["gave_up"] else ""))
    typer.echo(f"examples: {cfg.resolve(cfg.output) / 'examples.jsonl'}")


app.add_typer(instruct_app, name="instruct")


def main() -> None:
    try:
        app()
    except FournilError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
