"""The tokenizer a tuned model speaks: the run's, or the one the `sft.init_from` folder brings.

A model folder that brings a `tokenizer.json` (a fournil release, a transformers Llama folder) is
tuned with that tokenizer, since its weights were trained on those ids. ChatML's turn tokens
(`fournil.tokenizer.CHAT_TOKENS`) are added to it as special tokens when it lacks them, and the
model's embedding and output rows grow to match. The sft stage ships such a tokenizer in `final/`
beside the weights, with fournil's chat template, so every later reader of the model (evaluate,
release, `fournil chat`) finds the tokenizer that matches them (`fournil.model.io.tokenizer_of`); a
model tuned with the run's tokenizer reads it from the run's tokenizer stage, as `train/final` does.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import torch
from tokenizers import AddedToken, Tokenizer

from fournil.atomic import replacing, write_text
from fournil.errors import FournilError
from fournil.model.hf import TOKENIZER_FILES
from fournil.model.io import empty_model, state_tensors, tokenizer_of
from fournil.model.llama import Llama
from fournil.tokenizer import CHAT_TOKENS
from fournil.tokenizer.chat import CHAT_TEMPLATE

TOKENIZER, SETTINGS = TOKENIZER_FILES[:2]
SLOW_TOKENIZER_FILES = ("tokenizer.model", "vocab.json", "tokenizer_config.json")  # a tokenizer saved without tokenizer.json


def tokenizer_folder(init: Path, run_tokenizer: Path) -> Path:
    """The tokenizer folder of the model to tune (`tokenizer_of`); one that brings only a slow tokenizer is refused."""
    folder = tokenizer_of(init, run_tokenizer)
    if folder != init and any((init / name).is_file() for name in SLOW_TOKENIZER_FILES):
        raise FournilError(f"sft.init_from: {init} brings a tokenizer without tokenizer.json; save it as a fast tokenizer "
                           "(transformers.AutoTokenizer.from_pretrained(folder).save_pretrained(folder)) and try again")
    return folder


def read_tokenizer(folder: Path) -> Tokenizer:
    """The folder's tokenizer, turning special-token strings into their tokens as chat formatting needs."""
    path = folder / TOKENIZER
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as error:  # the Rust side raises plain Exceptions on bad JSON
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise FournilError(f"{path} is not a readable tokenizer.json ({reason}); give the tokenizer the model was trained with") from None
    tokenizer.encode_special_tokens = False
    return tokenizer


def check_vocabulary(tokenizer: Tokenizer, source: Path, model: Path, embeddings: int) -> None:
    """A tokenizer with more ids than the model has embeddings is not the model's (fewer is padding, as many models have)."""
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    if size > embeddings:
        raise FournilError(f"{source / TOKENIZER} has {size} tokens but the model in {model} only {embeddings} embeddings; "
                           "give the tokenizer the model was trained with")


def add_chat_tokens(tokenizer: Tokenizer) -> list[int]:
    """Add the ChatML turn tokens the tokenizer lacks, as special tokens; return their new ids (none when it has them)."""
    missing = [token for token in CHAT_TOKENS if tokenizer.token_to_id(token) is None]
    tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in missing])
    return [tokenizer.token_to_id(token) for token in missing]


@torch.no_grad()
def grow_vocabulary(model: Llama, new_ids: list[int]) -> Llama:
    """The model with embedding and output rows for `new_ids`, each the mean of the rows of the ids below the
    first new one. A common start for added tokens (J. Hewitt, "Initializing new word embeddings", 2021): a mean
    output row gives the new token about an average logit, so the tuned-from model's predictions over its own
    tokens barely move before tuning, where a random row could make a new token likely anywhere."""
    known = min(new_ids)
    config = dataclasses.replace(model.config, vocab_size=max(model.config.vocab_size, max(new_ids) + 1))
    grown = empty_model(config, model.embed.weight.device)
    state = state_tensors(model)
    for name in ("embed.weight", "lm_head.weight"):
        if name in state:
            rows = state[name]
            rows = torch.cat([rows, rows.new_zeros(config.vocab_size - len(rows), rows.shape[1])])
            rows[new_ids] = rows[:known].mean(0)
            state[name] = rows
    grown.load_state_dict(state, strict=not config.tie_embeddings)
    return grown


def ship(tokenizer: Tokenizer, source: Path, added: list[int], out: Path) -> None:
    """Write the tokenizer into the model folder `out`: the source's files, with the added tokens and fournil's chat
    template (the one the model was tuned on, so `apply_chat_template` gives the ids it was trained on)."""
    with replacing(out / TOKENIZER) as tmp:
        if added:
            tokenizer.save(str(tmp))
        else:
            shutil.copyfile(source / TOKENIZER, tmp)
    settings = _settings(source)
    settings["chat_template"] = CHAT_TEMPLATE
    if "added_tokens_decoder" in settings:  # transformers < 5 writes it, and reads the special tokens from it
        for token_id in added:
            settings["added_tokens_decoder"][str(token_id)] = {
                "content": tokenizer.id_to_token(token_id), "special": True, "normalized": False, "lstrip": False, "rstrip": False,
                "single_word": False}
    write_text(out / SETTINGS, json.dumps(settings, indent=2, ensure_ascii=False) + "\n")
    for name in TOKENIZER_FILES[2:]:
        if (source / name).is_file():
            with replacing(out / name) as tmp:
                shutil.copyfile(source / name, tmp)


def _settings(folder: Path) -> dict:
    path = folder / SETTINGS
    if not path.is_file():
        return {}
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise FournilError(f"{path} is not valid JSON ({error}); restore the tokenizer files") from None
    if not isinstance(settings, dict):
        raise FournilError(f"{path} is not a JSON object; restore the tokenizer files")
    return settings
