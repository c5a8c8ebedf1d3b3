"""Conversations from the formats people have, each one checked; what cannot be used is counted.

- `messages`: JSONL of {"messages": [{"role", "content"}, ...]} (transformers' chat templates, TRL);
- `alpaca`: {"instruction", "input", "output"} records, as a JSON array or JSONL (Stanford Alpaca, PolyLM's MultiAlpaca);
- `sharegpt`: {"conversations": [{"from", "value"}, ...]} (human/gpt/system).
A conversation is used when every turn has a known role and non-empty text, a system message comes
only first, and at least one assistant turn answers; otherwise it is skipped under its reason, never
repaired. Lengths are judged later, in tokens (`fournil.sft.packing`). A record with a `lang` field
naming another language than its source's belongs to another source (a mixed file, as `fournil instruct
generate` writes, read once per language) and is counted as `other_language`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from fournil.compressed import STREAM_ERRORS, byte_lines, read_all
from fournil.errors import FournilError
from fournil.tokenizer.chat import ROLES

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant",
                  "system": "system"}


def _from_messages(record: dict) -> list[dict]:
    return [{"role": turn.get("role"), "content": turn.get("content")} if isinstance(turn, dict) else {} for turn in record["messages"]]


def _from_alpaca(record: dict) -> list[dict]:
    prompt = record.get("instruction")
    extra = record.get("input")
    if isinstance(prompt, str) and isinstance(extra, str) and extra.strip():
        prompt = f"{prompt}\n\n{extra}"
    system = [{"role": "system", "content": record["system"]}] if record.get("system") else []
    return [*system, {"role": "user", "content": prompt}, {"role": "assistant", "content": record.get("output")}]


def _from_sharegpt(record: dict) -> list[dict]:
    turns = []
    for turn in record["conversations"]:
        turn = turn if isinstance(turn, dict) else {}
        turns.append({"role": SHAREGPT_ROLES.get(str(turn.get("from")).lower(), turn.get("from")), "content": turn.get("value")})
    return turns


READERS = {"messages": ("messages", _from_messages), "alpaca": ("instruction", _from_alpaca), "sharegpt": ("conversations", _from_sharegpt)}


def to_messages(record: object, declared: str = "auto") -> tuple[list[dict] | None, str]:
    """(messages, "") for a usable record, or (None, the reason it is skipped)."""
    if not isinstance(record, dict):
        return None, "not_an_object"
    kinds = [declared] if declared != "auto" else [k for k, (key, _) in READERS.items() if key in record]
    if not kinds or READERS[kinds[0]][0] not in record:
        return None, "unknown_format"
    key, convert = READERS[kinds[0]]
    if key != "instruction" and not isinstance(record[key], list):
        return None, "unknown_format"
    messages = convert(record)
    if any(m.get("role") not in ROLES for m in messages):
        return None, "unknown_role"
    if any(not isinstance(m["content"], str) or not m["content"].strip() for m in messages):
        return None, "empty_content"
    if any(m["role"] == "system" for m in messages[1:]):
        return None, "system_not_first"
    if not any(m["role"] == "assistant" for m in messages):
        return None, "no_assistant_turn"
    return messages, ""


def _records(path: Path) -> Iterator[object]:
    """Records of a file: a JSON array, or one JSON value a line; a bad line yields None."""
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(read_all(path).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, *STREAM_ERRORS):
            data = None
        if isinstance(data, list):
            yield from data
            return
    for line in byte_lines(path):
        if line.strip():
            try:
                yield json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                yield None


def read_conversations(path: Path, declared: str, skipped: Counter, lang: str | None = None) -> Iterator[list[dict]]:
    """The usable conversations of a file, in file order; every other record counted in `skipped`.
    With `lang`, records whose own `lang` field is another language are passed over."""
    if not path.is_file():
        raise FournilError(f"{path}: no such conversations file; fix sft.sources")
    try:
        for record in _records(path):
            if record is None:
                skipped["malformed_line"] += 1
                continue
            if lang is not None and isinstance(record, dict) and isinstance(record.get("lang"), str) and record["lang"] != lang:
                skipped["other_language"] += 1
                continue
            messages, reason = to_messages(record, declared)
            if messages is None:
                skipped[reason] += 1
            else:
                yield messages
    except STREAM_ERRORS:
        skipped["truncated_file"] += 1
