"""The tokenizer folder: `tokenizer.json` + `tokenizer_config.json` + `special_tokens_map.json`,
what `transformers.AutoTokenizer.from_pretrained` loads.

No BOS is added when encoding (`add_bos_token: false`): the mixture stage ends every document with
EOS and adds nothing else, so a model meets the same ids in transformers as in training.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer

from fournil.atomic import replacing, write_text
from fournil.tokenizer import BOS, CHAT_TOKENS, EOS, PAD, SPECIAL_TOKENS
from fournil.tokenizer.chat import CHAT_TEMPLATE


def save(tokenizer: Tokenizer, directory: Path, model_max_length: int = 1 << 30) -> None:
    """Write the folder; tokenizer.json last and atomically, so its presence means the folder is whole."""
    directory.mkdir(parents=True, exist_ok=True)
    ids = {token: tokenizer.token_to_id(token) for token in SPECIAL_TOKENS}
    roles = {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **roles,
        "additional_special_tokens": list(CHAT_TOKENS),
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": model_max_length,
        "chat_template": CHAT_TEMPLATE,
        "added_tokens_decoder": {
            str(i): {"content": t, "special": True, "normalized": False, "lstrip": False, "rstrip": False, "single_word": False}
            for t, i in ids.items()
        },
    }
    write_text(directory / "tokenizer_config.json", json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    special_map = {**roles, "additional_special_tokens": list(CHAT_TOKENS)}
    write_text(directory / "special_tokens_map.json", json.dumps(special_map, indent=2) + "\n")
    with replacing(directory / "tokenizer.json") as tmp:
        tokenizer.save(str(tmp))
