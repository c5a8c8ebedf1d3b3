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
tokens; then each side's training wall time and the optimiser's share of it, and fournil's bits
per byte at the standard's wall time (the gain per second).

    fournil run recipes/demo.yaml --until mixture        # the token shards and held-out text
    python benchmarks/quality.py recipes/demo.yaml --steps 150 --seeds 3
    python benchmarks/quality.py recipes/demo.yaml --set train.optimizer=adamw   # fournil with a change
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
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
    """Training seconds (evaluations left out) and the optimiser's share of them."""

    def __init__(self) -> None:
        self.start, self.paused, self.optimizer = time.perf_counter(), 0.0, 0.0

    def now(self) -> float:
        return time.perf_counter() - self.start - self.paused

    def timed(self, step):  # noqa: ANN001, ANN201
        def wrapped(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            begin = time.perf_counter()
            result = step(*args, **kwargs)
            self.optimizer += time.perf_counter() - begin
            return result
        return wrapped


def scorer(texts: dict[str, list[str]], tokenizer, bos: int, context: int, clock: Clock, curve: list, tokens_at):  # noqa: ANN001, ANN201
    """An evaluator that appends (tokens, training seconds, {lang: bits per byte}) to `curve`."""
    def evaluate(model: nn.Module) -> dict[str, float]:
        begin = time.perf_counter()
        scores = {lang: bits_per_byte(model, tokenizer, t, context, 8, bos_id=bos)["bits_per_byte"] for lang, t in texts.items()}
        curve.append((tokens_at(), clock.now(), scores))
        clock.paused += time.perf_counter() - begin
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
        clock.start = time.perf_counter()
        trainer._loop()
        wall = clock.now()
    return {"curve": curve, "wall": wall, "optimizer": clock.optimizer}


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
    clock.start = time.perf_counter()
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
    return {"curve": curve, "wall": clock.now(), "optimizer": clock.optimizer}


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
    """Bits per byte after `seconds` of training, interpolated on the curve; past its end, its last
    value (a run that stopped sooner would only go lower); None before its first evaluation."""
    previous = None
    for _, wall, scores in curve:
        if wall >= seconds:
            if previous is None:
                return None
            w0, v0 = previous
            return v0 + (scores[lang] - v0) * (seconds - w0) / (wall - w0)
        previous = (wall, scores[lang])
    return previous[1]


def spread(values: list[float | None], digits: int = 3) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "not reached"
    text = f"{statistics.mean(known):.{digits}f} ± {statistics.stdev(known) if len(known) > 1 else 0.0:.{digits}f}"
    return text + (f" ({len(values) - len(known)} of {len(values)} not reached)" if len(known) < len(values) else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--run", type=Path, help="the baked run folder (default runs/<recipe name>)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a recipe override for fournil's side (and the shared shape/budget)")
    parser.add_argument("--steps", type=int, help="optimiser steps (default: the recipe's train.max_steps)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--evals", type=int, default=6, help="evaluations along each run")
    parser.add_argument("--standard-lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    overrides = list(args.set) + ([f"train.max_steps={args.steps}"] if args.steps else [])
    recipe = load_recipe(args.recipe, overrides)
    run = args.run or Path("runs") / recipe.name
    tokenizer = load_tokenizer(run / "tokenizer")
    bos = special_ids(run / "tokenizer")["bos"]
    config = model_config(recipe.model, tokenizer.get_vocab_size())
    cfg = recipe.train
    texts = heldout_samples(run / "corpus", list(recipe.languages), cfg.eval_docs_per_language)
    every = max(1, cfg.max_steps // args.evals)
    tokens = cfg.max_steps * accumulation_steps(cfg, config.context_length, 1) * cfg.micro_batch_size * config.context_length
    print(f"# {recipe.name}: dim {config.dim}, {config.n_layers} layers, context {config.context_length}, vocabulary {config.vocab_size}; "
          f"{cfg.max_steps} steps × {tokens // cfg.max_steps} tokens = {tokens:,} tokens; {args.seeds} seeds; {args.threads} threads")
    print(f"# fournil: optimizer {cfg.optimizer}, lr {cfg.lr}, {cfg.schedule}, warmup {cfg.warmup_steps}, init std {config.init_std}"
          f"{', ' + ' '.join(args.set) if args.set else ''}; standard: AdamW lr {args.standard_lr}, cosine, warmup {cfg.warmup_steps}")
    results = {"fournil": [], "standard": []}
    for k in range(args.seeds):
        seed = recipe.seed + k
        results["standard"].append(train_standard(recipe, config, run / "mixture", seed, every, texts, tokenizer, bos, args.standard_lr))
        results["fournil"].append(train_fournil(recipe, config, run / "mixture", seed, every, texts, tokenizer, bos))
        print(f"seed {seed}: " + "; ".join(f"{side} " + " ".join(f"{lang} {v:.4f}" for lang, v in r[-1]["curve"][-1][2].items())
                                           + f" in {r[-1]['wall']:.0f} s, optimizer {100 * r[-1]['optimizer'] / r[-1]['wall']:.1f} %"
                                           for side, r in results.items()), flush=True)
    print(f"\n{'lang':<6}{'standard bpb':>18}{'fournil bpb':>18}{'ratio':>18}  {'tokens to reach (ratio)':>28}  {'fournil at standard wall':>26}")
    for lang in texts:
        std = [r["curve"][-1][2][lang] for r in results["standard"]]
        ours = [r["curve"][-1][2][lang] for r in results["fournil"]]
        ratio = [o / s for o, s in zip(ours, std, strict=True)]
        reach = [tokens_to_reach(f["curve"], lang, s["curve"][-1][2][lang]) for f, s in zip(results["fournil"], results["standard"], strict=True)]
        reach_ratio = [r / tokens if r is not None else None for r in reach]
        per_second = [at_time(f["curve"], lang, s["wall"]) for f, s in zip(results["fournil"], results["standard"], strict=True)]
        print(f"{lang:<6}{spread(std):>18}{spread(ours):>18}{spread(ratio):>18}  {spread(reach_ratio, 2):>28}  {spread(per_second):>26}")
    for side, runs in results.items():
        walls = [r["wall"] for r in runs]
        share = [r["optimizer"] / r["wall"] for r in runs]
        print(f"{side}: training {spread(walls, 1)} s ({tokens / statistics.mean(walls):,.0f} tokens/s), optimizer step {spread([100 * s for s in share], 1)} % of it")


if __name__ == "__main__":
    main()
