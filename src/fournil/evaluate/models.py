"""Opening a model folder to evaluate: a fournil checkpoint, a release folder or any transformers causal LM.

Everything becomes a module with the `Llama` interface (logits, or per-token loss with targets) plus
a tokenizer with the `tokenizers` encode API and the BOS id, so scoring code has one path. A
fournil checkpoint (`model.safetensors` + fournil `config.json`) loads with `fournil.model.io`;
a folder whose `config.json` names `architectures` is a transformers folder and loads with
transformers (release folders included, so their scores are what users of the export will see);
without transformers installed, a Llama folder (a fournil release) loads with fournil's own model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from fournil.errors import FournilError

MAX_CONTEXT = 2048


@dataclass
class Scorable:
    model: nn.Module
    tokenizer: object
    context_length: int
    bos_id: int | None
    eos_id: int | None
    kind: str  # "fournil" or "transformers"


class TransformersLM(nn.Module):
    """A transformers causal LM behind the `Llama` call interface."""

    def __init__(self, hf_model: nn.Module) -> None:
        super().__init__()
        self.hf = hf_model

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor | None = None, document_ids=None) -> torch.Tensor:
        logits = self.hf(input_ids=input_ids, use_cache=False).logits
        if targets is None:
            return logits
        nll = nn.functional.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=-100, reduction="none")
        return nll.view(targets.shape)


class _Encoding:
    def __init__(self, ids: list[int]) -> None:
        self.ids = ids


class TransformersTokenizer:
    """A transformers tokenizer behind the `tokenizers.Tokenizer` encode/decode API, for folders without tokenizer.json."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer

    def encode(self, text: str, add_special_tokens: bool = False) -> _Encoding:
        return _Encoding(self.tokenizer.encode(text, add_special_tokens=add_special_tokens))

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def get_vocab_size(self) -> int:
        return len(self.tokenizer)


def _config(folder: Path) -> dict:
    path = folder / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FournilError(f"{folder}: no config.json; give a fournil checkpoint (train/final, a step folder), "
                           "a release folder or a transformers model folder") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise FournilError(f"{path} is not valid JSON; the model folder is damaged") from None


def is_transformers_folder(folder: Path) -> bool:
    return "architectures" in _config(folder)


def find_tokenizer_dir(model_dir: Path, tokenizer_dir: Path | None = None) -> Path:
    """The tokenizer of a model: the one given, the model folder's own, or its run's `tokenizer/` stage."""
    if tokenizer_dir is not None:
        return tokenizer_dir
    for candidate in (model_dir, *(parent / "tokenizer" for parent in model_dir.resolve().parents[:3])):
        if (candidate / "tokenizer.json").is_file():
            return candidate
    if (model_dir / "tokenizer_config.json").is_file():  # a transformers folder with a slow tokenizer
        return model_dir
    raise FournilError(f"{model_dir}: no tokenizer found beside the model or in its run folder; pass --tokenizer DIR")


def _fournil_special_ids(tokenizer_dir: Path) -> dict[str, int | None]:
    from fournil.tokenizer import special_ids

    try:
        return dict(special_ids(tokenizer_dir))
    except FournilError:
        return {"bos": None, "eos": None}


def _transformers(config: dict):
    """transformers, to load a transformers folder; None for a Llama folder when it is not installed
    (a fournil release loads with fournil's own model then, as `generate` does)."""
    try:
        import transformers
    except ImportError:
        if config.get("model_type") == "llama":
            return None
        raise FournilError("evaluating a transformers folder needs transformers: pip install 'fournil[hf]'") from None
    return transformers


def open_model(model_dir: Path, tokenizer_dir: Path | None = None, device: str = "cpu") -> Scorable:
    """A model folder and its tokenizer, ready to score."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise FournilError(f"{model_dir}: no such model folder")
    config = _config(model_dir)
    tok_dir = find_tokenizer_dir(model_dir, tokenizer_dir)
    transformers = _transformers(config) if "architectures" in config else None
    if transformers is not None:
        hf = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device).eval()
        if (tok_dir / "tokenizer.json").is_file():
            from fournil.tokenizer import load

            tokenizer = load(tok_dir)
        else:
            tokenizer = TransformersTokenizer(transformers.AutoTokenizer.from_pretrained(tok_dir))
        # long-context models would make windows (and their full logits) huge: 2,048 tokens is plenty for held-out documents
        context = min(int(config.get("max_position_embeddings") or config.get("n_positions") or MAX_CONTEXT), MAX_CONTEXT)
        return Scorable(TransformersLM(hf), tokenizer, context, config.get("bos_token_id"), config.get("eos_token_id"), "transformers")
    from fournil.model.io import load_model
    from fournil.tokenizer import load

    model = load_model(model_dir, device=device).eval()
    ids = _fournil_special_ids(tok_dir)
    return Scorable(model, load(tok_dir), int(model.config.context_length), ids["bos"], ids["eos"], "fournil")
