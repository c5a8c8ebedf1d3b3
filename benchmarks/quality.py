"""Held-out bits per byte per token: fournil's training recipe against the standard one, in the same run.

At equal parameters, data order and tokens, both train on a baked run's token shards (the same
MixtureSampler stream, seed for seed) and are scored on the same held-out text per language:
- fournil: the recipe's model and `train:` section through fournil's own Trainer (its optimiser, schedule,
  init, guards), as `fournil train` does;
- standard: transformers' LlamaForCausalLM of the same shape (its own init), torch AdamW with
  β = (0.9, 0.95), weight decay 0.1 on matrices, gradient clipping at 1, linear warmup (the recipe's
  steps) and cosine to 0 (`transformers.get_cosine_schedule_with_warmup`), at `--standard-lr` (1e-3,
  Pythia-14M's and -70M's rate).
Both are evaluated `--evals` times along the run. Printed per language, as mean ± sample standard
deviation over the seeds: each recipe's final bits per byte, their ratio, and the tokens fournil
needed to reach the standard's final value (interpolated on its eval curve) over the standard's
tokens; fournil's bits per byte after as many training CPU seconds as the standard took (the gain per
second), and its ratio to the standard's final value; then each side's training time (CPU seconds of
its process, user + system, evaluations left out; wall time beside it), CPU seconds a step and the
optimiser step's share of the CPU time. CPU time, not wall time, because the machine may be shared:
other work slows the wall clock of both sides, not their CPU seconds. `--jobs` runs the seeds and
sides side by side in separate processes (each with its own CPU clock), `--fournil-set` changes
fournil's side alone (a larger batch with fewer steps at equal tokens, to amortise Muon's step).
`--fournil-only` trains fournil's side alone, for an ablation of fournil's recipe, compared with another
`--fournil-only` run; the standard side does not change between them (same seeds and shards), so its final
bits per byte from an earlier run at the same code, tokenizer and held-out text, given as
`--standard-bpb LANG=VALUE`, can stand in for it, and the ratios are printed to them.

    fournil run recipes/demo.yaml --until mixture        # the token shards and held-out text
    python benchmarks/quality.py recipes/demo.yaml --set train.optimizer=muon --steps 60 --set train.warmup_steps=6 --threads 1 --jobs 6
    python benchmarks/quality.py recipes/demo.yaml --fournil-set train.global_batch_tokens=8192 --fournil-set train.max_steps=150
    python benchmarks/quality.py recipes/demo.yaml --steps 60 --set train.warmup_steps=6 --threads 1 --jobs 3 \
        --fournil-only --standard-bpb fr=2.459 --standard-bpb en=2.608 --fournil-set train.schedule=wsd
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fournil.corpus.heldout import heldout_samples
from fournil.mixture.sampler import MixtureSampler
from fournil.model.hf import hf_config
from fournil.model.presets import model_config
from fournil.model.scoring import bits_per_byte
from fournil.recipe import load_recipe
from fournil.tokenizer import load as load_tokenizer
from fournil.tokenizer import special_ids
from fournil.train.distributed import Topology
from fournil.train.stage import build_model
from fournil.train.trainer import IGNORE, Trainer, accumulation_steps


class PerTokenLoss(nn.Module):
    """transformers' model behind the call fournil's scorer makes: model(inputs, targets=…) → [B, T] losses."""

    def __init__(self, hf: nn.Module) -> None:
        super().__init__()
        self.hf = hf

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = self.hf(input_ids=input_ids).logits.float()
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE, reduction="none").view(targets.shape)


class Clock:
    """Training seconds, evaluations left out, both wall and CPU (user + system of the process, all its
    threads): on a machine shared with other work the CPU seconds are the fair measure. Also the
    optimiser step's share of them."""

    def __init__(self) -> None:
        self.start()
        self.paused = self.paused_cpu = self.optimizer = self.optimizer_cpu = 0.0

    def start(self) -> None:
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()

    def now(self) -> float:
        return time.perf_counter() - self.wall0 - self.paused

    def cpu(self) -> float:
        return time.process_time() - self.cpu0 - self.paused_cpu

    def timed(self, step):  # noqa: ANN001, ANN201
        def wrapped(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            wall, cpu = time.perf_counter(), time.process_time()
            result = step(*args, **kwargs)
            self.optimizer += time.perf_counter() - wall
            self.optimizer_cpu += time.process_time() - cpu
            return result
        return wrapped


def scorer(texts: dict[str, list[str]], tokenizer, bos: int, context: int, clock: Clock, curve: list, tokens_at):  # noqa: ANN001, ANN201
    """An evaluator that appends (tokens, training CPU seconds, {lang: bits per byte}) to `curve`."""
    def evaluate(model: nn.Module) -> dict[str, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        scores = {lang: bits_per_byte(model, tokenizer, t, context, 8, bos_id=bos)["bits_per_byte"] for lang, t in texts.items()}
        curve.append((tokens_at(), clock.cpu(), scores))
        clock.paused += time.perf_counter() - wall
        clock.paused_cpu += time.process_time() - cpu
        return scores
    return evaluate


def train_fournil(recipe, config, mixture: Path, seed: int, every: int, texts, tokenizer, bos) -> dict:  # noqa: ANN001
    cfg = recipe.train.model_copy(update={"eval_every": every, "checkpoint_every": 10**9, "tensorboard": False})
    model = build_model(config, torch.device("cpu"), seed)
    sampler = MixtureSampler(mixture, config.context_length, cfg.micro_batch_size, seed=seed)
    clock, curve = Clock(), []
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(model, sampler, cfg, Path(out), Topology(0, 1, 0, torch.device("cpu")), model_config=config.to_dict(),
                          seq_len=config.context_length, flops_per_token=model.flops_per_token(config.context_length),
                          log=lambda message: None)
        trainer.evaluator = scorer(texts, tokenizer, bos, config.context_length, clock, curve, lambda: trainer.step * trainer.batch_tokens)
        for optimizer in trainer.optimizers:
            optimizer.step = clock.timed(optimizer.step)
        clock.start()
        trainer._loop()
        return result(clock, curve, trainer.step)


def train_standard(recipe, config, mixture: Path, seed: int, every: int, texts, tokenizer, bos, lr: float) -> dict:  # noqa: ANN001
    import transformers

    cfg = recipe.train
    torch.manual_seed(seed)
    data = hf_config(config, {"bos": None, "eos": None, "pad": None}, torch.float32)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**{k: v for k, v in data.items() if k not in ("architectures", "model_type")}))
    params = list(model.parameters())
    optimizer = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
                                   {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95))
    schedule = transformers.get_cosine_schedule_with_warmup(optimizer, cfg.warmup_steps, cfg.max_steps)
    sampler = MixtureSampler(mixture, config.context_length, cfg.micro_batch_size, seed=seed)
    accumulation = accumulation_steps(cfg, config.context_length, 1)
    clock, curve, step = Clock(), [], 0
    batch_tokens = accumulation * cfg.micro_batch_size * config.context_length
    evaluate = scorer(texts, tokenizer, bos, config.context_length, clock, curve, lambda: step * batch_tokens)
    wrapper = PerTokenLoss(model)
    optimizer.step = clock.timed(optimizer.step)
    clock.start()
    while step < cfg.max_steps:
        batches = [sampler.next_batch() for _ in range(accumulation)]
        count = sum(int((b.targets != IGNORE).sum()) for b in batches)
        for batch in batches:
            logits = model(input_ids=batch.input_ids).logits.float()
            loss = F.cross_entropy(logits.flatten(0, 1), batch.targets.flatten(), ignore_index=IGNORE, reduction="sum") / count
            loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()  # after optimizer.step (wrapped by the clock, hence torch's warning)
        optimizer.zero_grad(set_to_none=True)
        step += 1
        if step % every == 0 or step == cfg.max_steps:
            evaluate(wrapper)
            model.train()
    return result(clock, curve, step)


def result(clock: Clock, curve: list, steps: int) -> dict:
    return {"curve": curve, "wall": clock.now(), "cpu": clock.cpu(), "steps": steps,
            "optimizer": clock.optimizer, "optimizer_cpu": clock.optimizer_cpu}


def tokens_to_reach(curve: list, lang: str, target: float) -> float | None:
    """Tokens at which the eval curve first reaches `target`, linearly interpolated; None if never."""
    previous = None
    for tokens, _, scores in curve:
        value = scores[lang]
        if value <= target:
            if previous is None:
                return float(tokens)  # reached by the first evaluation: an upper bound
            t0, v0 = previous
            return t0 + (tokens - t0) * (v0 - target) / (v0 - value)
        previous = (tokens, value)
    return None


def at_time(curve: list, lang: str, seconds: float) -> float | None:
    """Bits per byte after `seconds` of training CPU time, interpolated on the curve; past its end, its last
    value (a run that stopped sooner would only go lower); None before its first evaluation."""
    previous = None
    for _, cpu, scores in curve:
        if cpu >= seconds:
            if previous is None:
                return None
            c0, v0 = previous
            return v0 + (scores[lang] - v0) * (seconds - c0) / (cpu - c0)
        previous = (cpu, scores[lang])
    return previous[1]


def spread(values: list[float | None], digits: int = 3) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "not reached"
    text = f"{statistics.mean(known):.{digits}f} ± {statistics.stdev(known) if len(known) > 1 else 0.0:.{digits}f}"
    return text + (f" ({len(values) - len(known)} of {len(values)} not reached)" if len(known) < len(values) else "")


class Setup:
    """What every run reads: the two recipes, the model shape, the tokenizer and the held-out text (picklable,
    so a `--jobs` process builds its own)."""

    def __init__(self, path: Path, overrides: list[str], ours: list[str], run: Path | None, evals: int, standard_lr: float,
                 threads: int) -> None:
        self.path, self.overrides, self.ours, self.evals, self.standard_lr, self.threads = path, overrides, ours, evals, standard_lr, threads
        self.recipe = load_recipe(path, overrides)
        self.ours_recipe = load_recipe(path, overrides + ours)
        self.run = run or Path("runs") / self.recipe.name
        vocab = load_tokenizer(self.run / "tokenizer").get_vocab_size()
        self.config = model_config(self.recipe.model, vocab)
        self.ours_config = model_config(self.ours_recipe.model, vocab)  # --fournil-set model.overrides.… (an init, say)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k in ("path", "overrides", "ours", "run", "evals", "standard_lr", "threads")}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], state["overrides"], state["ours"], state["run"], state["evals"], state["standard_lr"], state["threads"])


def run_job(job: tuple) -> dict:
    """One side at one seed, on `threads` threads of this process."""
    setup, side, seed = job
    torch.set_num_threads(setup.threads)
    print(f"# {side} seed {seed}: started", flush=True)
    tokenizer = load_tokenizer(setup.run / "tokenizer")
    bos = special_ids(setup.run / "tokenizer")["bos"]
    recipe = setup.ours_recipe if side == "fournil" else setup.recipe
    texts = heldout_samples(setup.run / "corpus", list(recipe.languages), recipe.train.eval_docs_per_language)
    every = max(1, recipe.train.max_steps // setup.evals)
    if side == "fournil":
        result = train_fournil(recipe, setup.ours_config, setup.run / "mixture", seed, every, texts, tokenizer, bos)
    else:
        result = train_standard(recipe, setup.config, setup.run / "mixture", seed, every, texts, tokenizer, bos, setup.standard_lr)
    print(f"# {side} seed {seed}: " + " ".join(f"{lang} {v:.4f}" for lang, v in result["curve"][-1][2].items())
          + f" in {result['cpu']:.0f} CPU s", flush=True)
    return result


def report_fournil_only(recipe, runs: list[dict], standard_bpb: dict[str, float]) -> None:  # noqa: ANN001
    for k, run in enumerate(runs):
        print(f"seed {recipe.seed + k}: fournil " + " ".join(f"{lang} {v:.4f}" for lang, v in run["curve"][-1][2].items())
              + f" in {run['cpu']:.0f} CPU s ({run['wall']:.0f} s wall), optimizer {100 * run['optimizer_cpu'] / run['cpu']:.1f} %")
    print(f"\n{'lang':<6}{'fournil bpb':>18}{'standard bpb (earlier run)':>28}{'ratio':>18}")
    for lang in recipe.languages:
        ours = [r["curve"][-1][2][lang] for r in runs]
        std = standard_bpb.get(lang)
        print(f"{lang:<6}{spread(ours):>18}{std if std is not None else 'not given':>28}"
              f"{spread([o / std for o in ours]) if std is not None else '':>18}")
    cpu, wall = [r["cpu"] for r in runs], [r["wall"] for r in runs]
    share = [100 * r["optimizer_cpu"] / r["cpu"] for r in runs]
    print(f"\nfournil: training {spread(cpu, 1)} CPU s ({spread(wall, 1)} s wall), {spread([r['cpu'] / r['steps'] for r in runs], 3)} "
          f"CPU s a step; optimizer step {spread(share, 1)} % of the CPU time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--run", type=Path, help="the baked run folder (default runs/<recipe name>)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a recipe override for both sides (shape, budget, warmup; fournil's train: fields)")
    parser.add_argument("--fournil-set", action="append", default=[], metavar="FIELD=VALUE",
                        help="an override for fournil's side alone, e.g. a larger train.global_batch_tokens with fewer train.max_steps at equal tokens")
    parser.add_argument("--steps", type=int, help="optimiser steps (default: the recipe's train.max_steps)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--evals", type=int, default=6, help="evaluations along each run")
    parser.add_argument("--standard-lr", type=float, default=1e-3)
    parser.add_argument("--fournil-only", action="store_true", help="train fournil's side alone (an ablation of fournil's recipe)")
    parser.add_argument("--standard-bpb", action="append", default=[], metavar="LANG=VALUE",
                        help="with --fournil-only: the standard side's final bits per byte from an earlier run at the same settings")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--jobs", type=int, default=1, help="runs side by side, each in its own process on --threads threads "
                        "(CPU times stay per process, so they hold on a shared machine)")
    args = parser.parse_args()
    try:
        standard_bpb = {lang: float(value) for lang, value in (item.split("=", 1) for item in args.standard_bpb)}
    except ValueError:
        parser.error("--standard-bpb takes LANG=VALUE, e.g. fr=2.459")
    if standard_bpb and not args.fournil_only:
        parser.error("--standard-bpb goes with --fournil-only (otherwise the standard side is trained in the same run)")
    overrides = list(args.set) + ([f"train.max_steps={args.steps}"] if args.steps else [])
    setup = Setup(args.recipe, overrides, list(args.fournil_set), args.run, args.evals, args.standard_lr, args.threads)
    recipe, ours_recipe, config = setup.recipe, setup.ours_recipe, setup.config
    cfg, ours_cfg = recipe.train, ours_recipe.train

    def budget(c) -> int:  # noqa: ANN001
        return c.max_steps * accumulation_steps(c, config.context_length, 1) * c.micro_batch_size * config.context_length
    tokens, ours_tokens = budget(cfg), budget(ours_cfg)
    print(f"# {recipe.name}: dim {config.dim}, {config.n_layers} layers, context {config.context_length}, vocabulary {config.vocab_size}; "
          f"{cfg.max_steps} steps × {tokens // cfg.max_steps} tokens = {tokens:,} tokens; {args.seeds} seeds; "
          f"{args.threads} threads × {args.jobs} jobs")
    print(f"# fournil: optimizer {ours_cfg.optimizer}, lr {ours_cfg.lr}, {ours_cfg.schedule}, warmup {ours_cfg.warmup_steps}, init std {setup.ours_config.init_std}"
          f"{', zero-initialised output projections' if setup.ours_config.zero_init_out else ''}, "
          f"{ours_cfg.max_steps} steps × {ours_tokens // ours_cfg.max_steps} tokens = {ours_tokens:,}"
          f"{', ' + ' '.join(args.set + args.fournil_set) if args.set or args.fournil_set else ''}; "
          f"standard: AdamW lr {args.standard_lr}, cosine, warmup {cfg.warmup_steps}", flush=True)
    sides = ("fournil",) if args.fournil_only else ("standard", "fournil")
    jobs = [(setup, side, recipe.seed + k) for k in range(args.seeds) for side in sides]
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            done = list(pool.map(run_job, jobs))
    else:
        done = [run_job(job) for job in jobs]
    results = {side: done[k::len(sides)] for k, side in enumerate(sides)}
    if args.fournil_only:
        report_fournil_only(recipe, results["fournil"], standard_bpb)
        return
    for k in range(args.seeds):
        print(f"seed {recipe.seed + k}: " + "; ".join(
            f"{side} " + " ".join(f"{lang} {v:.4f}" for lang, v in runs[k]["curve"][-1][2].items())
            + f" in {runs[k]['cpu']:.0f} CPU s ({runs[k]['wall']:.0f} s wall), optimizer {100 * runs[k]['optimizer_cpu'] / runs[k]['cpu']:.1f} %"
            for side, runs in results.items()))
    print(f"\n{'lang':<6}{'standard bpb':>18}{'fournil bpb':>18}{'ratio':>18}  {'tokens to reach (ratio)':>28}"
          f"  {'fournil at standard CPU s':>26}{'ratio':>18}")
    for lang in recipe.languages:
        pairs = list(zip(results["fournil"], results["standard"], strict=True))
        std = [s["curve"][-1][2][lang] for _, s in pairs]
        ours = [f["curve"][-1][2][lang] for f, _ in pairs]
        ratio = [o / s for o, s in zip(ours, std, strict=True)]
        reach = [tokens_to_reach(f["curve"], lang, s["curve"][-1][2][lang]) for f, s in pairs]
        reach_ratio = [r / tokens if r is not None else None for r in reach]
        per_second = [at_time(f["curve"], lang, s["cpu"]) for f, s in pairs]
        second_ratio = [v / s if v is not None else None for v, s in zip(per_second, std, strict=True)]
        print(f"{lang:<6}{spread(std):>18}{spread(ours):>18}{spread(ratio):>18}  {spread(reach_ratio, 2):>28}"
              f"  {spread(per_second):>26}{spread(second_ratio):>18}")
    print()
    for side, runs in results.items():
        cpu, wall = [r["cpu"] for r in runs], [r["wall"] for r in runs]
        per_step = [r["cpu"] / r["steps"] for r in runs]
        share = [100 * r["optimizer_cpu"] / r["cpu"] for r in runs]
        print(f"{side}: training {spread(cpu, 1)} CPU s ({spread(wall, 1)} s wall), {spread(per_step, 3)} CPU s a step, "
              f"{(ours_tokens if side == 'fournil' else tokens) / statistics.mean(cpu):,.0f} tokens a CPU second; "
              f"optimizer step {spread(share, 1)} % of the CPU time")
    cost = [f["cpu"] / s["cpu"] for f, s in zip(results["fournil"], results["standard"], strict=True)]
    print(f"fournil / standard training CPU time: {spread(cost)}")


if __name__ == "__main__":
    main()
