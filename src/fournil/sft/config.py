"""The `sft:` section of a recipe: conversations to tune on, and the training loop's settings with
fine-tuning defaults (the loop is the pretraining one; see fournil.train.config)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fournil.schema import Section
from fournil.train.config import TrainConfig

CONVERSATION_FORMATS = ("auto", "messages", "alpaca", "sharegpt")


class ConversationSource(Section):
    """One file of conversations: its format, the language its users write in, its licence."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    path: str
    lang: str = Field(description="the language of the user's turns; chat evaluation expects answers in it")
    license: str
    weight: float = Field(1.0, gt=0, description="copies of each conversation per epoch (a fraction keeps a seeded subset)")
    format: Literal["auto", "messages", "alpaca", "sharegpt"] = Field(
        "auto", description="messages (role/content JSONL, as TRL), alpaca (instruction/input/output JSON or JSONL), "
                            "sharegpt (conversations of from/value); auto tells them apart by their fields")


class SftConfig(TrainConfig):
    init_from: str | None = Field(None, description="a model folder to tune (a fournil release or model folder, or a transformers "
                                                    "Llama folder), with the tokenizer it brings (ChatML's tokens added if it lacks "
                                                    "them), else the run's; default: this run's pretrained train/final")
    sources: list[ConversationSource] = Field(min_length=1)
    epochs: float = Field(3.0, gt=0, description="passes over the training conversations (TeenyTinyLlama-Chat: 3); sets max_steps")
    max_steps: int | None = Field(None, ge=1, description="optimiser steps; default: what `epochs` takes")
    heldout_fraction: float = Field(0.1, ge=0, lt=1, description="conversations kept out of training, for chat evaluation")
    lr: float = Field(3e-4, gt=0, description="peak learning rate")
    optimizer: Literal["adamw", "muon"] = Field("adamw", description="adamw everywhere (tuning with Muon is not measured here), or muon for the blocks' matrices")
    warmup_steps: int = Field(10, ge=0)
    global_batch_tokens: int = Field(8192, ge=1, description="tokens per optimiser step, padding included")
    checkpoint_every: int = Field(50, ge=1)
    log_every: int = Field(5, ge=1)
    document_masking: bool = Field(True, description="attention stays within each packed conversation")
