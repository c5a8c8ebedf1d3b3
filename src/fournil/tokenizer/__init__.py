"""The tokenizer stage: a byte-level BPE trained on a language-balanced sample, and its fairness figures.

`load(dir)` and `special_ids(dir)` are what later stages use; they read the folder this stage writes
(`tokenizer.json` + `tokenizer_config.json`), so any stage can use the tokenizer without training code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from fournil.errors import FournilError

if TYPE_CHECKING:
    import tokenizers

BOS, EOS, PAD = "<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"  # ChatML's turn tokens (fournil.tokenizer.chat); IM_END ends a turn
CHAT_TOKENS = (IM_START, IM_END)
RESERVED = 11
# Ids 0..15, in this order, in every fournil tokenizer: a model can rely on them before training.
SPECIAL_TOKENS = (BOS, EOS, PAD, *CHAT_TOKENS, *(f"<|reserved_{i}|>" for i in range(RESERVED)))


def load(directory: str | Path, special_strings_as_text: bool = True) -> tokenizers.Tokenizer:
    """The `tokenizers.Tokenizer` saved in a tokenizer folder.

    By default a special token's string inside a text (« <|end_of_text|> » in a web page) is encoded
    as text, never as that token, so documents cannot forge EOS or chat roles; pass False to have
    `encode` turn such strings into the special tokens (chat formatting, as transformers does).
    """
    import tokenizers

    path = Path(directory) / "tokenizer.json"
    if not path.is_file():
        raise FournilError(f"{path}: no such file; run `fournil tokenizer RECIPE` first or give a tokenizer folder")
    try:
        tokenizer = tokenizers.Tokenizer.from_file(str(path))
    except Exception as error:  # the Rust side raises plain Exceptions on bad JSON
        raise FournilError(f"{path} is not a valid tokenizer.json ({error}); train it again with `fournil tokenizer RECIPE`") from None
    tokenizer.encode_special_tokens = special_strings_as_text
    return tokenizer


def special_ids(directory: str | Path) -> dict[str, int]:
    """Ids of the BOS, EOS and PAD tokens, read from `tokenizer_config.json`."""
    path = Path(directory) / "tokenizer_config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        ids = {entry["content"]: int(i) for i, entry in config["added_tokens_decoder"].items()}
        return {role: ids[config[f"{role}_token"]] for role in ("bos", "eos", "pad")}
    except FileNotFoundError:
        raise FournilError(f"{path}: no such file; run `fournil tokenizer RECIPE` first or give a tokenizer folder") from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError):
        raise FournilError(f"{path} is corrupt or lacks bos/eos/pad tokens; train the tokenizer again") from None
