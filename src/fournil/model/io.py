"""A model folder: `model.safetensors` + `config.json`, written atomically, read without unpickling.

config.json is `{"format": "fournil-llama", "format_version": 1, "config": LlamaConfig.to_dict()}`.
A folder holding a Hugging Face `LlamaForCausalLM` export is read too (through `fournil.model.hf`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from fournil.atomic import replacing, write_text
from fournil.errors import FournilError
from fournil.model.llama import Llama, LlamaConfig

FORMAT = "fournil-llama"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


def state_tensors(model: Llama) -> dict[str, torch.Tensor]:
    """The tensors to store: contiguous, on CPU, the tied output head left out (it is the embedding)."""
    tensors = {name: t.detach().contiguous().cpu() for name, t in model.state_dict().items()}
    if model.config.tie_embeddings:
        tensors.pop("lm_head.weight")
    return tensors


def save_model(model: Llama, folder: Path) -> None:
    """Write model.safetensors then config.json into `folder`, each atomically."""
    folder = Path(folder)
    tensors = state_tensors(model)
    with replacing(folder / WEIGHTS) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT})
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": model.config.to_dict()}
    write_text(folder / CONFIG, json.dumps(config, indent=2) + "\n")


def read_config(folder: Path) -> dict:
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise FournilError(f"{folder}: no {CONFIG}; expected a model folder written by fournil (e.g. runs/<name>/train/final)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise FournilError(f"{path}: not valid JSON ({error}); the file is corrupt, restore it from a checkpoint") from None


def load_config(folder: Path) -> LlamaConfig:
    data = read_config(folder)
    if data.get("format") != FORMAT:
        raise FournilError(f"{folder}/{CONFIG}: not a fournil model config (format {data.get('format')!r}, expected {FORMAT!r})")
    if data.get("format_version", 0) > FORMAT_VERSION:
        raise FournilError(f"{folder}/{CONFIG}: format version {data['format_version']} is newer than this fournil reads; upgrade fournil")
    return LlamaConfig.from_dict(data.get("config", {}))


def model_config(folder: Path) -> LlamaConfig:
    """The shape of the model in `folder` (fournil's format or a Hugging Face export), without reading its weights."""
    data = read_config(folder)
    if "architectures" in data:
        from fournil.model.hf import config_from_hf

        return config_from_hf(data, Path(folder) / CONFIG)
    return load_config(folder)


def read_tensors(path: Path, expected: dict[str, tuple[torch.Size, torch.dtype]], device: str | torch.device = "cpu",
                 skip: frozenset[str] = frozenset()) -> dict[str, torch.Tensor]:
    """Read exactly the `expected` tensors (name → shape, dtype) from a safetensors file, checking
    names, shapes and values (tensors named in `skip` may be there and are left out); every problem
    is a FournilError naming the tensor."""
    if not path.is_file():
        raise FournilError(f"{path}: missing; a model folder needs its weights")
    tensors = {}
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            names = set(f.keys()) - skip
            missing, unknown = sorted(set(expected) - names), sorted(names - set(expected))
            if missing:
                raise FournilError(f"{path}: tensor {missing[0]} is missing ({len(missing)} missing); the file does not match config.json")
            if unknown:
                raise FournilError(f"{path}: unexpected tensor {unknown[0]} ({len(unknown)} unexpected); the file does not match config.json")
            for name, (shape, dtype) in expected.items():
                try:
                    tensor = f.get_tensor(name)
                except (SafetensorError, RuntimeError, ValueError) as error:
                    raise FournilError(f"{path}: tensor {name} cannot be read ({error}); the file is corrupt") from None
                if tensor.shape != shape:
                    raise FournilError(f"{path}: tensor {name} has shape {list(tensor.shape)}, config.json implies {list(shape)}")
                if not tensor.is_floating_point() or not torch.isfinite(tensor).all():
                    raise FournilError(f"{path}: tensor {name} holds non-finite or non-float values; the file is corrupt")
                tensors[name] = tensor.to(dtype)
    except SafetensorError as error:
        raise FournilError(f"{path}: not a readable safetensors file ({error}); it is corrupt or truncated") from None
    return tensors


def empty_model(config: LlamaConfig, device: str | torch.device = "cpu") -> Llama:
    """A model with uninitialised weights on `device` (no time spent on a random init)."""
    with torch.device("meta"):
        model = Llama(config)
    model.to_empty(device=device)
    model.tie_weights()
    return model


def pick_device(choice: str, setting: str, index: int = 0) -> torch.device:
    """`auto` is the GPU when one is visible, else the CPU; `cuda` where none is visible is the user's
    mistake, named by `setting` (the recipe field or option that asked for it)."""
    if choice not in ("auto", "cpu", "cuda"):
        raise FournilError(f"{setting} = {choice!r}: use auto, cpu or cuda")
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise FournilError(f"{setting} = cuda but no CUDA GPU is visible; use auto or cpu")
        return torch.device("cuda", index)
    return torch.device("cpu")


def load_model(folder: Path, device: str | torch.device = "cpu") -> Llama:
    """The model saved in `folder` (fournil's format, or a Hugging Face Llama export), in eval mode."""
    folder = Path(folder)
    if "architectures" in read_config(folder):
        from fournil.model.hf import import_hf

        return import_hf(folder, device=device)
    model = empty_model(load_config(folder), device)
    tied = "lm_head.weight" if model.config.tie_embeddings else None
    expected = {name: (t.shape, t.dtype) for name, t in model.state_dict().items() if name != tied}
    model.load_state_dict(read_tensors(folder / WEIGHTS, expected, device), strict=not model.config.tie_embeddings)
    return model.eval()


def tokenizer_of(model_dir: Path, run_tokenizer: Path) -> Path:
    """The tokenizer folder a run's model speaks: the one its folder ships (the sft stage's `final/`, when the
    `sft.init_from` folder brought its own), else the run's tokenizer stage folder."""
    return model_dir if (Path(model_dir) / "tokenizer.json").is_file() else Path(run_tokenizer)


def find_tokenizer(model_dir: Path) -> Path:
    """The tokenizer folder for a model folder: the folder itself (a Hugging Face export), or the run's
    `tokenizer/` stage folder above it (runs/<name>/train/final, runs/<name>/train/checkpoints/step_N)."""
    model_dir = Path(model_dir).resolve()
    for folder in (model_dir, *model_dir.parents[:4]):
        for candidate in (folder, folder / "tokenizer"):
            if (candidate / "tokenizer.json").is_file():
                return candidate
    raise FournilError(f"{model_dir}: no tokenizer.json in it or in a run folder above it; give the tokenizer folder with --tokenizer")
