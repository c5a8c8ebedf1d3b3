"""The `plan:` section of a recipe: the hardware a full-scale bake is planned for, and the reference
system it follows. No stage reads it; `fournil plan` and `fournil run` do (docs/plan.md)."""

from __future__ import annotations

from pydantic import Field, field_validator

from fournil.schema import Section


class PlanConfig(Section):
    gpu: str | None = Field(None, description="the GPU the bake is planned on, by name (H100, A100, H200, ...); default H100")
    gpus: int = Field(1, ge=1, description="GPUs the training runs on (train.parallelism shards over them with fsdp)")
    mfu: float | None = Field(None, gt=0, le=1, description="model FLOPs utilisation for the cost estimate; default the MFU this run's training measured, else 0.4")
    pue: float = Field(1.2, ge=1, description="data-centre power usage effectiveness: facility energy over IT energy")
    reference: str | None = Field(None, description="the reference system this recipe follows (fournil.references), set next to it in the plan")

    @field_validator("gpu")
    @classmethod
    def _known_gpu(cls, gpu: str | None) -> str | None:
        from fournil.hardware import gpu_named
        from fournil.errors import FournilError

        if gpu is not None:
            try:
                gpu_named(gpu)
            except FournilError as error:
                raise ValueError(str(error).split(": ", 1)[1]) from None
        return gpu

    @field_validator("reference")
    @classmethod
    def _known_reference(cls, reference: str | None) -> str | None:
        from fournil.references import REFERENCES

        if reference is not None and reference not in REFERENCES:
            raise ValueError(f"unknown reference; choose one of {', '.join(REFERENCES)}")
        return reference
