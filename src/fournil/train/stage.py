"""The train stage: build the recipe's model, train it on the mixture, write checkpoints and final/.

Under `torchrun` every process runs this; rank 0 alone writes files (log, checkpoints, final/) and
the manifest. Resuming is automatic: the latest valid checkpoint in `checkpoints/` is picked up.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fournil.corpus.heldout import heldout_samples
from fournil.errors import FournilError
from fournil.mixture.sampler import MixtureSampler
from fournil.model.io import empty_model, save_model
from fournil.model.llama import Llama
from fournil.model.presets import model_config
from fournil.model.scoring import bits_per_byte
from fournil.runs import StageContext
from fournil.tokenizer import load as load_tokenizer
from fournil.tokenizer import special_ids
from fournil.train.config import TrainConfig
from fournil.train.distributed import checkpoint_blocks, compile_model, parallelize, setup, teardown
from fournil.train.trainer import Trainer


def make_evaluator(ctx: StageContext, context_length: int, cfg: TrainConfig):  # noqa: ANN201
    """Per-language bits per byte on the held-out sample (the evaluate stage's documents), or None when the corpus holds none."""
    tokenizer = load_tokenizer(ctx.input("tokenizer"))
    bos = special_ids(ctx.input("tokenizer"))["bos"]
    corpus = ctx.input("corpus")
    texts = {lang: t for lang, t in heldout_samples(corpus, list(ctx.recipe.languages), cfg.eval_docs_per_language).items() if t}
    if not texts:
        return None

    def evaluate(model: nn.Module) -> dict[str, float]:
        return {lang: round(bits_per_byte(model, tokenizer, t, context_length, cfg.eval_batch_size, bos_id=bos)["bits_per_byte"], 5)
                for lang, t in texts.items()}

    return evaluate


def build_model(config, device: torch.device, seed: int) -> Llama:  # noqa: ANN001
    torch.manual_seed(seed)
    with torch.device(device):
        return Llama(config)


def prepare(model: Llama, cfg: TrainConfig, topology) -> nn.Module:  # noqa: ANN001
    """The model as the loop trains it: activation checkpointing, compile and DDP/FSDP2, as `cfg` asks
    (the train and sft stages both)."""
    checkpoint_blocks(model, cfg.activation_checkpointing)
    if cfg.compile == "on" or (cfg.compile == "auto" and topology.device.type == "cuda"):
        compile_model(model)
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and topology.device.type == "cuda")
    return parallelize(model, topology, cfg.parallelism, bf16)


def run(ctx: StageContext) -> dict[str, Any]:
    cfg: TrainConfig = ctx.recipe.train
    topology = setup(cfg.device)
    try:
        vocab_size = load_tokenizer(ctx.input("tokenizer")).get_vocab_size()
        config = model_config(ctx.recipe.model, vocab_size)
        seed = cfg.seed_or(ctx.recipe.seed)
        model = build_model(config, topology.device, seed)
        params, non_embedding = model.num_params(), model.num_params(non_embedding=True)
        flops_per_token = model.flops_per_token(config.context_length)
        model = prepare(model, cfg, topology)
        sampler = MixtureSampler(ctx.input("mixture"), config.context_length, cfg.micro_batch_size, seed=seed,
                                 rank=topology.rank, world_size=topology.world_size, document_masking=cfg.document_masking)
        missing = sorted(set(sampler.languages) - set(ctx.recipe.languages))
        if missing:
            raise FournilError(f"the mixture holds languages {missing} that the recipe does not name; run `fournil mixture RECIPE` again")
        trainer = Trainer(model, sampler, cfg, ctx.out, topology, model_config=config.to_dict(), seq_len=config.context_length,
                          flops_per_token=flops_per_token, evaluator=make_evaluator(ctx, config.context_length, cfg),
                          log=ctx.log, run_name=ctx.recipe.name, recipe_view={"train": cfg.model_dump(mode="json"),
                                                                              "model": config.to_dict(), "seed": seed})
        figures = trainer.train()
        weights = trainer.final_state_dict()
        if topology.is_main:
            final = empty_model(config)
            final.load_state_dict(weights)
            save_model(final, ctx.out / "final")
        figures.update(params=params, non_embedding_params=non_embedding, flops_per_token=flops_per_token,
                       model=config.to_dict(), world_size=topology.world_size,
                       parallelism=cfg.parallelism if topology.distributed else "none")
        return figures
    finally:
        teardown(topology)
