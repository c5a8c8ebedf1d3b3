"""The `train:` section of a recipe."""

import re
from typing import Literal

from pydantic import Field, field_validator

from fournil.schema import Section


class TrainConfig(Section):
    max_steps: int = Field(1000, ge=1, description="optimiser steps")
    global_batch_tokens: int = Field(65536, ge=1, description="tokens per optimiser step over all processes; reached by gradient accumulation")
    micro_batch_size: int = Field(8, ge=1, description="sequences per forward pass and process")
    lr: float = Field(3e-3, gt=0, description="peak learning rate")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="final learning rate as a fraction of the peak")
    warmup_steps: int = Field(100, ge=0)
    schedule: Literal["cosine", "wsd"] = Field("cosine", description="cosine decay, or warmup-stable-decay (extendable: only the last decay_fraction decays)")
    decay_fraction: float = Field(0.2, gt=0, le=1, description="wsd: share of max_steps spent in the final linear decay")
    optimizer: Literal["adamw", "muon"] = Field("muon", description="muon for the blocks' matrices (Newton–Schulz-orthogonalised momentum, at train.lr by Moonshot's RMS-matching rule) with adamw for embeddings, head and norms; or adamw everywhere (the reference recipes, as their papers)")
    muon_momentum: float = Field(0.95, ge=0, lt=1, description="muon: momentum of its (Nesterov) buffer")
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.95, ge=0, lt=1)
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.1, ge=0, description="decoupled weight decay on matrices (not on norms or biases)")
    grad_clip: float = Field(1.0, ge=0, description="clip the global gradient norm to this; 0 turns clipping off")
    z_loss: float = Field(0.0, ge=0, description="weight of the z-loss (log-sum-exp² of the logits, PaLM); 0 turns it off")
    checkpoint_every: int = Field(200, ge=1, description="steps between checkpoints; one is also written on SIGTERM/SIGINT")
    keep_last: int = Field(2, ge=1, description="checkpoints kept, besides milestones")
    milestone_every: int = Field(0, ge=0, description="keep every checkpoint whose step is a multiple of this forever; 0 keeps none")
    log_every: int = Field(10, ge=1, description="steps between host reads of the device-side step records (the only per-step host sync); every step is still logged")
    eval_every: int = Field(0, ge=0, description="steps between per-language bits-per-byte evaluations on held-out documents; 0 evaluates only at the end")
    eval_docs_per_language: int = Field(200, ge=1, description="held-out documents per language scored by each evaluation during training: the first of the evaluate stage's sample (fournil.corpus.heldout), all of it when equal to evaluate.max_docs_per_language")
    eval_batch_size: int = Field(8, ge=1)
    spike_window: int = Field(128, ge=2, description="recent accepted steps the spike guard compares with")
    spike_sigma: float = Field(6.0, gt=0, description="a loss or gradient norm this many standard deviations above the window mean is a spike: the step is skipped")
    spike_min_history: int = Field(20, ge=2, description="accepted steps needed before spikes are judged")
    rollback_after: int = Field(4, ge=1, description="this many skipped steps in a row roll the run back to the last checkpoint, skipping the data in between")
    max_rollbacks: int = Field(3, ge=0, description="rollbacks allowed before the run stops as diverged")
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="auto: bf16 autocast on CUDA, float32 on CPU; master weights stay float32")
    compile: Literal["auto", "on", "off"] = Field("auto", description="torch.compile each block, the final norm and the head; auto: on CUDA only")
    activation_checkpointing: Literal["none", "ops", "selective", "full"] = Field("none", description="recompute activations in backward: in every block the elementwise ops only, keeping matmul and attention outputs (ops), every other block (selective), or every block (full)")
    parallelism: Literal["ddp", "fsdp"] = Field("ddp", description="under torchrun with several processes: DDP (replicated) or FSDP2 (sharded)")
    document_masking: bool = Field(False, description="attention stays within each packed document")
    peak_flops: float | None = Field(None, gt=0, description="peak FLOP/s of one device for MFU; known GPUs are looked up")
    grid_g_per_kwh: float = Field(475.0, ge=0, description="grid carbon intensity in g CO2eq per kWh (475: world average, as codecarbon)")
    cpu_watts_per_core: float = Field(10.0, ge=0, description="CPU power estimate per busy core, used when no energy counter is readable")
    codecarbon_country: str | None = Field(None, description="ISO 3166 alpha-3 code of where the run's hardware is (e.g. FRA); when set, codecarbon's offline tracker runs beside the energy meter and its kWh and CO2 (with its intensity for that country) are reported too (needs fournil[energy])")
    tensorboard: bool = Field(True, description="also write TensorBoard events when tensorboard is installed")
    wandb_project: str | None = Field(None, description="also log to this Weights & Biases project (needs wandb installed)")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int | None = Field(None, description="seeds the model's initialisation and the data order (sft: the conversations' order); "
                                               "default: the recipe's seed. Unlike that one it leaves the corpus, tokenizer and mixture "
                                               "alone, so runs that differ only here share them (`fournil sweep --seeds`)")

    def seed_or(self, recipe_seed: int) -> int:
        """The training seed: this section's, else the recipe's."""
        return recipe_seed if self.seed is None else self.seed

    @field_validator("codecarbon_country")
    @classmethod
    def _country_code(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch("[A-Z]{3}", value):
            raise ValueError("an ISO 3166 alpha-3 country code in capitals, e.g. FRA, DEU or BRA")
        return value
