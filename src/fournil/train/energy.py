"""Energy and emissions of a training run, cumulative across resumes.

fournil's meter reads NVML's energy counter on GPU and adds process CPU time × an estimated power per
core (no CPU counter is readable without root on most machines); kWh × the recipe's grid intensity
gives kg CO2eq. codecarbon's offline tracker, when the recipe names a country, runs beside it as the
reference: its own CPU, GPU and RAM power models and its grid intensity for that country.
Both count per process, so the ranks' figures add up.
"""

from __future__ import annotations

import logging
import math
import os

import torch

from fournil.errors import FournilError
from fournil.train.distributed import Topology, all_reduce_sum


RUN_KEYS = ("kwh", "cpu_kwh", "gpu_kwh", "ram_kwh", "kg_co2eq")


def _sig(x: float) -> float:
    return float(f"{x:.6g}")


def _sig_or_none(x: float) -> float | None:
    """A figure codecarbon gave (6 significant digits), or None where it gave none (NaN)."""
    return _sig(x) if math.isfinite(x) else None


class EnergyMeter:
    """Energy used by this process, plus what earlier runs of the same training recorded."""

    def __init__(self, device: torch.device, cpu_watts_per_core: float):
        self.cpu_watts_per_core = cpu_watts_per_core
        self.previous_kwh = 0.0
        self._nvml = _nvml_handle(device) if device.type == "cuda" else None
        self._cpu0 = _cpu_seconds()
        self._gpu0 = self._gpu_millijoules()

    @property
    def method(self) -> str:
        cpu = f"CPU time × {self.cpu_watts_per_core:g} W per core (estimate)"
        return f"NVML GPU energy counter + {cpu}" if self._nvml is not None else cpu

    @property
    def nvml_index(self) -> int | None:
        """NVML's index of this process's GPU (it may differ from CUDA's), or None."""
        if self._nvml is None:
            return None
        import pynvml

        return int(pynvml.nvmlDeviceGetIndex(self._nvml))

    def _gpu_millijoules(self) -> float:
        if self._nvml is None:
            return 0.0
        import pynvml

        return float(pynvml.nvmlDeviceGetTotalEnergyConsumption(self._nvml))

    def run_kwh(self) -> float:
        """kWh used by this process since it started training."""
        cpu_joules = (_cpu_seconds() - self._cpu0) * self.cpu_watts_per_core
        gpu_joules = (self._gpu_millijoules() - self._gpu0) / 1000
        return (cpu_joules + gpu_joules) / 3.6e6

    def load_state_dict(self, state: dict) -> None:
        self.previous_kwh = float(state["kwh"])


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _nvml_handle(device: torch.device):
    try:
        import pynvml

        pynvml.nvmlInit()
        props = torch.cuda.get_device_properties(device)
        bus = f"{props.pci_domain_id:08X}:{props.pci_bus_id:02X}:{props.pci_device_id:02X}.0"
        handle = pynvml.nvmlDeviceGetHandleByPciBusId(bus)
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # raises where the GPU has no counter
        return handle
    except Exception:  # no nvidia-ml-py, no driver access, or an older GPU: fall back to the CPU estimate
        return None


class CodecarbonTracker:
    """codecarbon's OfflineEmissionsTracker for this process ("process" tracking: its share of the CPU
    and RAM, and only its own GPU), with what earlier runs of the same training recorded."""

    def __init__(self, country: str, nvml_index: int | None):
        try:
            from codecarbon import OfflineEmissionsTracker, __version__
            from codecarbon.input import DataSource
            from codecarbon.output_methods.base_output import BaseOutput
        except ImportError:
            raise FournilError("train.codecarbon_country needs codecarbon: pip install 'fournil[energy]'") from None
        known = DataSource().get_global_energy_mix_data()
        if country not in known:
            raise FournilError(f"train.codecarbon_country: {country!r} is not in codecarbon's grid data; "
                               f"use an ISO 3166 alpha-3 code such as FRA, DEU or BRA")
        self.country, self.version = country, __version__
        self.previous = {"kwh": 0.0, "kg_co2eq": 0.0}
        self.from_step = 0
        latest: dict = {}

        class Keep(BaseOutput):  # codecarbon hands its totals to output handlers on flush() and stop()
            def out(self, total, delta):  # noqa: ANN001, ARG002
                latest["total"] = total

            def live_out(self, total, delta):  # noqa: ANN001
                pass

        self._latest = latest
        logging.getLogger("codecarbon").setLevel(logging.ERROR)  # it warns about every unknown CPU model
        self._tracker = OfflineEmissionsTracker(
            country_iso_code=country, project_name="fournil", tracking_mode="process", output_methods=[],
            log_level="error", output_handlers=[Keep()], gpu_ids=None if nvml_index is None else [nvml_index])
        self._tracker.start()
        self._stopped = False

    def run_figures(self) -> dict:
        """This run's kWh (total, CPU, GPU, RAM) and kg CO2eq so far; NaN if codecarbon gave none (it
        swallows its own errors), so that the ranks still reduce together."""
        if not self._stopped:
            self._tracker.flush()
        total = self._latest.get("total")
        values = (total.energy_consumed, total.cpu_energy, total.gpu_energy, total.ram_energy, total.emissions) if total else [math.nan] * 5
        return dict(zip(RUN_KEYS, map(float, values)))

    def stop(self) -> None:
        if not self._stopped:
            self._tracker.stop()
            self._stopped = True

    def state_dict(self, run: dict) -> dict:
        """Cumulative figures, given every rank's `run_figures()` summed."""
        got = math.isfinite(run["kwh"])
        return {"kwh": self.previous["kwh"] + (run["kwh"] if got else 0.0),
                "kg_co2eq": self.previous["kg_co2eq"] + (run["kg_co2eq"] if got else 0.0), "from_step": self.from_step}

    def load_state_dict(self, state: dict) -> None:
        self.previous = {"kwh": float(state["kwh"]), "kg_co2eq": float(state["kg_co2eq"])}
        self.from_step = int(state["from_step"])

    def figures(self, run: dict) -> dict:
        """The figures block, given every rank's `run_figures()` summed."""
        cumulative = self.state_dict(run)
        method = f"codecarbon {self.version} OfflineEmissionsTracker, process tracking, {self.country} grid"
        if not math.isfinite(run["kwh"]):
            method += "; it returned no figures for this run, which are left out"
        return {"kwh": _sig(cumulative["kwh"]), "kg_co2eq": _sig(cumulative["kg_co2eq"]),
                "kwh_this_run": _sig_or_none(run["kwh"]),
                "kwh_this_run_by_part": {part: _sig_or_none(run[f"{part}_kwh"]) for part in ("cpu", "gpu", "ram")},
                "since_step": self.from_step, "country": self.country, "method": method}


class RunEnergy:
    """What the trainer asks of energy: the meter and, when the recipe names a country, codecarbon's
    tracker, each summed over the ranks and carried across resumes (rank 0 carries the earlier runs'
    totals, so that a sum over the ranks counts them once)."""

    def __init__(self, device: torch.device, topology: Topology, cpu_watts_per_core: float, grid_g_per_kwh: float,
                 codecarbon_country: str | None):
        self.meter = EnergyMeter(device, cpu_watts_per_core)
        self.device, self.topo = device, topology
        self.grid, self.country = grid_g_per_kwh, codecarbon_country
        self.codecarbon: CodecarbonTracker | None = None

    def start(self) -> None:
        """Starts codecarbon's tracker when asked for (the meter counts from its construction)."""
        if self.country and self.codecarbon is None:
            self.codecarbon = CodecarbonTracker(self.country, self.meter.nvml_index)

    def stop(self) -> None:
        if self.codecarbon is not None:
            self.codecarbon.stop()

    def _sum(self, values: list[float]) -> list[float]:
        return all_reduce_sum(torch.tensor(values, dtype=torch.float64, device=self.device), self.topo).tolist()

    def _codecarbon_run(self) -> dict:
        run = self.codecarbon.run_figures()
        return dict(zip(RUN_KEYS, self._sum([run[k] for k in RUN_KEYS])))

    def _run_and_total_kwh(self) -> tuple[float, float]:
        """kWh of this run (all ranks) and across resumes."""
        run = self._sum([self.meter.run_kwh()])[0]
        return run, self.meter.previous_kwh + run

    def log_fields(self) -> dict:
        """The cumulative figures a log line carries."""
        kwh = self._run_and_total_kwh()[1]
        return {"energy_kwh": _sig(kwh), "kg_co2eq": _sig(kwh * self.grid / 1000)}

    def state_dict(self) -> dict:
        state = {"kwh": self._run_and_total_kwh()[1]}
        if self.codecarbon is not None:
            state["codecarbon"] = self.codecarbon.state_dict(self._codecarbon_run())
        return state

    def load_state_dict(self, state: dict, step: int) -> None:
        """`step` is the checkpoint's: codecarbon counts from there when the checkpoint has no figures of it."""
        main = self.topo.is_main
        self.meter.load_state_dict(state if main else {"kwh": 0.0})
        if self.codecarbon is not None:
            earlier = state.get("codecarbon", {"kwh": 0.0, "kg_co2eq": 0.0, "from_step": step})
            self.codecarbon.load_state_dict(earlier if main else {**earlier, "kwh": 0.0, "kg_co2eq": 0.0})

    def figures(self) -> dict:
        run, total = self._run_and_total_kwh()
        figures = {"kwh": _sig(total), "kwh_this_run": _sig(run), "kg_co2eq": _sig(total * self.grid / 1000),
                   "method": self.meter.method, "grid_g_per_kwh": self.grid}
        if self.codecarbon is not None:
            figures["codecarbon"] = self.codecarbon.figures(self._codecarbon_run())
        return figures
