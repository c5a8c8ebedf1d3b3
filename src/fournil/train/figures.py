"""The train stage's figures (its manifest's `figures`), read by the release by these names."""

from __future__ import annotations

from typing import Any

from fournil.schema import Figures


class Device(Figures):
    name: str | None = None
    type: str | None = None  # cpu, cuda
    processes: int | None = None


class Codecarbon(Figures):
    kwh: float | None = None
    kg_co2eq: float | None = None
    kwh_this_run: float | None = None
    kwh_this_run_by_part: dict[str, float | None] | None = None
    since_step: int | None = None
    country: str | None = None
    method: str | None = None


class Energy(Figures):
    kwh: float | None = None  # cumulative across resumes
    kwh_this_run: float | None = None
    kg_co2eq: float | None = None
    method: str | None = None
    grid_g_per_kwh: float | None = None
    codecarbon: Codecarbon | None = None


class LanguageTraining(Figures):
    final_loss: float | None = None
    bits_per_byte: float | None = None  # the last in-training evaluation, on the held-out sample evaluate scores


class TrainFigures(Figures):
    steps: int | None = None
    tokens: int | None = None  # tokens seen
    wall_seconds: float | None = None  # across resumes; None when an older checkpoint did not record it
    wall_seconds_this_run: float | None = None
    device: Device | None = None
    precision: str | None = None
    global_batch_tokens: int | None = None
    gradient_accumulation: int | None = None
    final_loss: float | None = None
    final_loss_window_steps: int | None = None
    per_language: dict[str, LanguageTraining] | None = None
    tokens_per_second: float | None = None
    mfu: float | None = None
    mfu_formula: str | None = None
    peak_flops: float | None = None
    peak_flops_source: str | None = None
    energy: Energy | None = None
    skipped_steps: int | None = None
    rollbacks: int | None = None
    resumed_from_step: int | None = None
    params: int | None = None
    non_embedding_params: int | None = None
    flops_per_token: float | None = None
    model: dict[str, Any] | None = None  # the model config
    world_size: int | None = None
    parallelism: str | None = None
