"""Checkpoints: one folder per step, written whole or not at all, verified before use.

`checkpoints/step_<N>/` holds `model.safetensors`, `optimizer.safetensors`, `state.json` (step,
tokens, sampler, RNG, monitors), `config.json` (the model config) and `checksums.json` (xxh3-128 of
each file). It is written to `.tmp-step_<N>/`, synced to disk and renamed, so a crash leaves either
the whole folder or a temporary one that the next save removes. `latest` names the newest folder.
On resume, folders are tried newest first and one whose checksums do not match is passed over with
a warning, so a checkpoint corrupted on disk costs only the steps since the previous one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import xxhash
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from fournil.atomic import write_text
from fournil.errors import FournilError

STEP_DIR = re.compile(r"^step_(\d+)$")
FILES = ("model.safetensors", "optimizer.safetensors", "state.json", "config.json")


def _digest(path: Path) -> str:
    h = xxhash.xxh3_128()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _plain(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous, no shared storage (tied weights), as safetensors requires."""
    seen: set[int] = set()
    out = {}
    for name, tensor in tensors.items():
        tensor = tensor.detach().cpu().contiguous()
        if tensor.untyped_storage().data_ptr() in seen:
            tensor = tensor.clone()
        seen.add(tensor.untyped_storage().data_ptr())
        out[name] = tensor
    return out


def flatten_optimizer(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer state dict keyed by parameter names → (tensors for safetensors, JSON rest)."""
    tensors, scalars = {}, {}
    for name, entry in state_dict["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{name}::{key}"] = value
            else:
                scalars[f"{name}::{key}"] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[str, dict[str, Any]] = {}
    for flat, value in [*tensors.items(), *meta["scalars"].items()]:
        name, key = flat.rsplit("::", 1)
        state.setdefault(name, {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def step_dirs(root: Path) -> list[tuple[int, Path]]:
    """Finished checkpoint folders, oldest first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := STEP_DIR.match(p.name))]
    return sorted(found)


def save_checkpoint(root: Path, step: int, model: dict[str, torch.Tensor], optimizer: dict, state: dict,
                    config: dict, keep_last: int, milestone_every: int = 0) -> Path:
    """Write step_<step>/ atomically, point `latest` at it and prune old ones; return the folder."""
    root.mkdir(parents=True, exist_ok=True)
    for leftover in root.glob(".tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    final = root / f"step_{step}"
    tmp = root / f".tmp-step_{step}"
    try:
        _write_files(tmp, model, optimizer, state, config)
    except OSError as error:  # a full disk or a lost mount: the earlier checkpoints are untouched
        shutil.rmtree(tmp, ignore_errors=True)
        raise FournilError(f"could not write checkpoint {final}: {error.strerror or error}; make room (train.keep_last keeps "
                           f"fewer) and run the same command again: it resumes from the last complete checkpoint") from None
    if final.exists():  # a step redone after a rollback
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync(root)
    write_text(root / "latest", final.name)
    _prune(root, keep_last, milestone_every)
    return final


def _write_files(tmp: Path, model: dict[str, torch.Tensor], optimizer: dict, state: dict, config: dict) -> None:
    tmp.mkdir()
    optimizer_tensors, optimizer_meta = flatten_optimizer(optimizer)
    save_file(_plain(model), tmp / "model.safetensors")
    save_file(_plain(optimizer_tensors), tmp / "optimizer.safetensors")
    (tmp / "state.json").write_text(json.dumps({**state, "optimizer": optimizer_meta}, default=_json_default))
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    for name in FILES:
        _fsync(tmp / name)
    (tmp / "checksums.json").write_text(json.dumps({"algorithm": "xxh3_128", "files": {n: _digest(tmp / n) for n in FILES}}, indent=2))
    _fsync(tmp / "checksums.json")


def _json_default(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _prune(root: Path, keep_last: int, milestone_every: int) -> None:
    dirs = step_dirs(root)
    for step, path in dirs[:-keep_last]:
        if milestone_every and step % milestone_every == 0:
            continue
        shutil.rmtree(path, ignore_errors=True)


def verify(folder: Path) -> str | None:
    """None when every file matches its checksum, else what is wrong."""
    try:
        recorded = json.loads((folder / "checksums.json").read_text())["files"]
    except (OSError, ValueError, KeyError):
        return "checksums.json is missing or unreadable"
    for name in FILES:
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if _digest(path) != recorded.get(name):
            return f"{name} does not match its checksum"
    return None


def latest_valid(root: Path, warn: Callable[[str], None]) -> Path | None:
    """The newest checkpoint folder whose checksums match; corrupt ones are reported and passed over."""
    for _, folder in reversed(step_dirs(root)):
        problem = verify(folder)
        if problem is None:
            return folder
        warn(f"warning: checkpoint {folder} is corrupt ({problem}); trying the previous one")
    return None


def load_checkpoint(folder: Path) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """(model tensors, optimizer state dict keyed by parameter names, state) of a verified folder."""
    try:
        model = load_file(folder / "model.safetensors")
        optimizer_tensors = load_file(folder / "optimizer.safetensors")
    except (SafetensorError, OSError) as error:  # verified, so only a disk fault gets here
        raise RuntimeError(f"cannot read checkpoint {folder}: {error}") from error
    state = json.loads((folder / "state.json").read_text())
    optimizer = unflatten_optimizer(optimizer_tensors, state.pop("optimizer"))
    return model, optimizer, state
