"""The sft stage: instruction tuning on the pretraining loop, from this run's model or a given one.

The recipe's conversations are read, checked and tokenised in the chat format; a seeded share of
them is held out (written to `heldout.jsonl` for the evaluate stage's chat scores). The rest are
packed and trained on with the loss on assistant tokens only, by `fournil.train.trainer.Trainer`:
checkpoints, exact resume, the spike guard, per-language loss, energy and DDP/FSDP2 come with it.
The tuned model goes to `final/`, with the tokenizer it speaks when `sft.init_from` brought its own
(`fournil.sft.tokenizer`). Without an `sft:` section the stage records that nothing was tuned.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer

from fournil.errors import FournilError
from fournil.model.hf import special_tokens
from fournil.model.io import empty_model, load_model, model_config, save_model
from fournil.runs import StageContext
from fournil.sft.config import SftConfig
from fournil.sft.conversations import read_conversations
from fournil.sft.packing import IGNORE, ConversationSampler, Encoded, encode_all
from fournil.sft.tokenizer import add_chat_tokens, check_vocabulary, grow_vocabulary, read_tokenizer, ship, tokenizer_folder
from fournil.tokenizer import IM_END
from fournil.train.distributed import setup, teardown
from fournil.train.stage import prepare
from fournil.train.trainer import Trainer, accumulation_steps

HELDOUT = "heldout.jsonl"


def starting_model(ctx: StageContext, cfg: SftConfig) -> Path:
    """The model folder to tune: `sft.init_from`, else this run's pretrained model."""
    if not cfg.init_from:
        return ctx.input("train") / "final"
    folder = ctx.recipe.resolve(cfg.init_from)
    if not (folder / "config.json").is_file():
        raise FournilError(f"sft.init_from = {cfg.init_from!r}: {folder} holds no config.json; give a fournil or transformers model folder")
    return folder


def chat_tokenizer(ctx: StageContext, init: Path) -> tuple[Tokenizer, Path, list[int], int]:
    """The tokenizer to tune `init` with (its folder's own, else the run's), with ChatML's tokens; the folder it comes
    from, the ids added to it and the padding id (PAD, else EOS, else the end of a turn: padding is never a target)."""
    source = tokenizer_folder(init, ctx.input("tokenizer"))
    tokenizer = read_tokenizer(source)
    check_vocabulary(tokenizer, source, init, model_config(init).vocab_size)
    added = add_chat_tokens(tokenizer)
    ids = special_tokens(source)
    pad = next(i for i in (ids["pad"], ids["eos"], tokenizer.token_to_id(IM_END)) if i is not None)
    return tokenizer, source, added, pad


def heldout_loss(model: torch.nn.Module, heldout: list[Encoded], languages: list[str], device: torch.device) -> dict[str, float]:
    """Mean cross-entropy on the assistant tokens of held-out conversations, per language."""
    sums, counts = Counter(), Counter()
    model.eval()
    with torch.no_grad():
        for c in heldout:
            ids = torch.from_numpy(c.ids).to(device)
            targets = torch.where(torch.from_numpy(c.trained[1:]).to(device), ids[1:], IGNORE)
            ce = model(ids[None, :-1], targets=targets[None])
            sums[c.lang] += float(ce.sum())
            counts[c.lang] += int((targets != IGNORE).sum())
    return {languages[k]: round(sums[k] / counts[k], 5) for k in counts if counts[k]}


def _read_sources(ctx: StageContext, cfg: SftConfig, languages: list[str]) -> tuple[list, dict[str, Counter]]:
    sources, skipped = [], {}
    for source in cfg.sources:
        skipped[source.name] = Counter()
        conversations = list(read_conversations(ctx.recipe.resolve(source.path), source.format, skipped[source.name],
                                                source.lang))
        sources.append((source.name, languages.index(source.lang), conversations))
    return sources, skipped


def run(ctx: StageContext) -> dict[str, Any]:
    cfg: SftConfig | None = ctx.recipe.sft
    if cfg is None:
        ctx.log("[sft] the recipe has no sft: section: nothing to tune")
        return {"instruction_tuned": False}
    languages = list(ctx.recipe.languages)
    init = starting_model(ctx, cfg)
    tokenizer, source, added, pad = chat_tokenizer(ctx, init)
    topology = setup(cfg.device)
    try:
        model = load_model(init, topology.device)
        if added:
            ctx.log(f"[sft] {source}: its tokenizer lacks {', '.join(tokenizer.id_to_token(i) for i in added)}; added, with mean embeddings")
            model = grow_vocabulary(model, added)
        model.train()
        config = model.config
        sources, skipped = _read_sources(ctx, cfg, languages)
        unusable = Counter()
        train, owners, heldout = encode_all(tokenizer, sources, config.context_length, ctx.recipe.seed, cfg.heldout_fraction, unusable)
        for reason, n in unusable.items():
            name, _, why = reason.partition(": ")
            skipped[name][why] += n
        sampler = ConversationSampler(train, [cfg.sources[k].weight for k in owners], languages, config.context_length,
                                      cfg.micro_batch_size, seed=cfg.seed_or(ctx.recipe.seed), pad_id=pad, epochs=cfg.epochs,
                                      rank=topology.rank, world_size=topology.world_size)
        rows_per_step = accumulation_steps(cfg, config.context_length, topology.world_size) * cfg.micro_batch_size * topology.world_size
        steps = cfg.max_steps or max(1, math.ceil(sampler.total_rows() / rows_per_step))
        loop_cfg = cfg.model_copy(update={"max_steps": steps})
        flops_per_token = model.flops_per_token(config.context_length)
        wrapped = prepare(model, cfg, topology)
        ctx.log(f"[sft] {len(train)} conversations × {cfg.epochs:g} epochs in {steps} steps, {len(heldout)} held out, from {init}")
        trainer = Trainer(wrapped, sampler, loop_cfg, ctx.out, topology, model_config=config.to_dict(), seq_len=config.context_length,
                          flops_per_token=flops_per_token, log=ctx.log, run_name=f"{ctx.recipe.name}-sft",
                          recipe_view={"sft": cfg.model_dump(mode="json"), "seed": cfg.seed_or(ctx.recipe.seed)})
        figures = trainer.train()
        weights = trainer.final_state_dict()
        if topology.is_main:
            final = empty_model(config)
            final.load_state_dict(weights)
            save_model(final, ctx.out / "final")
            if source != ctx.input("tokenizer"):  # a model tuned with the run's tokenizer reads it from the run, as train/final does
                ship(tokenizer, source, added, ctx.out / "final")
            _write_heldout(ctx.out / HELDOUT, heldout, languages)
            scores = heldout_loss(final.to(topology.device), [c for c, _ in heldout], languages, topology.device)
            for lang, loss in scores.items():
                figures["per_language"].setdefault(lang, {})["heldout_loss"] = loss
            for lang in figures["per_language"]:
                figures["per_language"][lang]["heldout_conversations"] = sum(languages[c.lang] == lang for c, _ in heldout)
        figures.update(instruction_tuned=True, init_from=str(init), chat_template="chatml", tokenizer=str(source),
                       added_tokens=[tokenizer.id_to_token(i) for i in added],
                       epochs=round(steps * rows_per_step / len(sampler.rows_of_epoch(0)), 3),
                       sources=_source_figures(cfg, train, owners, heldout, skipped),
                       padding_share=sampler.padding_share(), params=model.num_params(), model=config.to_dict(),
                       world_size=topology.world_size, parallelism=cfg.parallelism if topology.distributed else "none")
        return figures
    finally:
        teardown(topology)


def _write_heldout(path: Path, heldout: list[tuple[Encoded, list[dict]]], languages: list[str]) -> None:
    lines = [json.dumps({"lang": languages[c.lang], "source": c.source, "messages": m}, ensure_ascii=False) for c, m in heldout]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def _source_figures(cfg: SftConfig, train: list[Encoded], owners: list[int], heldout: list, skipped: dict[str, Counter]) -> list[dict]:
    rows = []
    for k, source in enumerate(cfg.sources):
        mine = [c for c, owner in zip(train, owners) if owner == k]
        held = sum(c.source == source.name for c, _ in heldout)
        rows.append({"name": source.name, "lang": source.lang, "license": source.license, "format": source.format,
                     "conversations": len(mine) + held, "heldout_conversations": held,
                     "trained_tokens": int(sum(c.trained.sum() for c in mine)), "skipped": dict(sorted(skipped[source.name].items()))})
    return rows
