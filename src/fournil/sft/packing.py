"""Conversations → token ids with a loss mask, packed into rows, and the resumable sampler over them.

The ids of a conversation are those of its whole rendered text (`fournil.tokenizer.chat.render`),
as `apply_chat_template(tokenize=True)` gives them; a token is trained on when it starts inside an
assistant span, so the loss falls on each answer and the `<|im_end|>` closing it, nothing else.
Rows hold whole conversations (input t[i], target t[i+1]), several to a row, with a document id per
conversation so attention stays inside it; the rest of a row is padding, never trained on. A
conversation that does not fit in one row is skipped and counted, never cut mid-answer.

Each epoch packs a seeded permutation of the training conversations (with `weight` copies each), so
the whole stream of rows is a pure function of (conversations, seed) and the sampler's state is one
row index, as the pretraining sampler's.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

from fournil.errors import FournilError
from fournil.mixture.sampler import Batch
from fournil.tokenizer import SPECIAL_TOKENS
from fournil.tokenizer.chat import render

IGNORE = -100


@dataclass
class Encoded:
    ids: np.ndarray  # int64 [n]
    trained: np.ndarray  # bool [n]: token i is a target the loss reads
    lang: int  # index into the sampler's languages
    source: str


def special_strings(tokenizer) -> frozenset[str]:  # noqa: ANN001
    """fournil's special tokens and the tokenizer's own: text that a content must not hold."""
    return frozenset({*SPECIAL_TOKENS, *(t.content for t in tokenizer.get_added_tokens_decoder().values() if t.special)})


def encode(tokenizer, messages: list[dict], lang: int, source: str, specials: frozenset[str] | None = None) -> Encoded | str:  # noqa: ANN001
    """The conversation's ids and mask, or the reason it is skipped. `tokenizer` turns special-token
    strings into their tokens (fournil.tokenizer.load(..., special_strings_as_text=False)), so a content
    holding one of `specials` (default: `special_strings(tokenizer)`; a caller encoding many passes it once) is skipped."""
    specials = special_strings(tokenizer) if specials is None else specials
    if any(token in m["content"] for m in messages for token in specials):
        return "special_token_in_text"  # would forge a turn boundary
    text, spans = render(messages)
    encoding = tokenizer.encode(text, add_special_tokens=False)
    starts = np.array([start for start, _ in encoding.offsets], dtype=np.int64)
    trained = np.zeros(len(starts), dtype=bool)
    for start, end in spans:
        trained |= (starts >= start) & (starts < end)
    return Encoded(np.array(encoding.ids, dtype=np.int64), trained, lang, source)


def is_heldout(messages: list[dict], seed: int, fraction: float) -> bool:
    """Whether a conversation is held out, by a hash of its first user turn: conversations that share a
    prompt (the same question answered twice) fall on the same side, so none leaks into training."""
    first = next(m["content"] for m in messages if m["role"] != "system")
    digest = hashlib.sha256(f"{seed}\0{first.strip()}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def epoch_order(conversations: list[Encoded], weights: list[float], seed: int, epoch: int) -> list[int]:
    """Indices of the conversations one epoch reads: ⌊weight⌋ copies each and a seeded share of one
    more for the fraction, in a seeded order."""
    rng = np.random.default_rng([seed, epoch])
    copies = [int(w) + (rng.random() < w - int(w)) for w in weights]
    order = np.repeat(np.arange(len(conversations)), copies)
    return rng.permutation(order).tolist()


def pack(conversations: list[Encoded], order: list[int], seq_len: int) -> list[list[int]]:
    """Rows of conversation indices, filled in order: the next conversation opens a new row when the
    current one has no room for it."""
    rows, row, used = [], [], 0
    for index in order:
        need = len(conversations[index].ids) - 1
        if used + need > seq_len and row:
            rows.append(row)
            row, used = [], 0
        row.append(index)
        used += need
    if row:
        rows.append(row)
    return rows


class ConversationSampler:
    """Batches of packed conversations for one data-parallel rank; the interface of MixtureSampler."""

    def __init__(self, conversations: list[Encoded], weights: list[float], languages: list[str], seq_len: int,
                 batch_size: int, *, seed: int, pad_id: int, epochs: float, rank: int = 0, world_size: int = 1):
        if not conversations:
            raise FournilError("no training conversation is left (see the skipped counts); give more sft.sources or lower sft.heldout_fraction")
        self.conversations, self.weights, self.languages = conversations, weights, languages
        self.seq_len, self.batch_size, self.seed, self.pad_id = seq_len, batch_size, seed, pad_id
        self.rank, self.world_size, self.epochs = rank, world_size, epochs
        self._epochs: list[list[list[int]]] = []
        self.sequence = 0
        digest = hashlib.sha256()
        for c in conversations:
            digest.update(c.ids.tobytes() + np.packbits(c.trained).tobytes())
        self.data_sha256 = digest.hexdigest()

    def rows_of_epoch(self, epoch: int) -> list[list[int]]:
        while len(self._epochs) <= epoch:
            order = epoch_order(self.conversations, self.weights, self.seed, len(self._epochs))
            self._epochs.append(pack(self.conversations, order, self.seq_len))
        return self._epochs[epoch]

    def total_rows(self) -> int:
        """Rows in `epochs` passes (a fractional last epoch counts its share of rows)."""
        whole = int(self.epochs)
        rows = sum(len(self.rows_of_epoch(e)) for e in range(whole))
        return rows + math.ceil((self.epochs - whole) * len(self.rows_of_epoch(whole))) if self.epochs > whole else rows

    def padding_share(self) -> float:
        """The share of the first epoch's positions that are padding."""
        rows = self.rows_of_epoch(0)
        used = sum(len(self.conversations[i].ids) - 1 for row in rows for i in row)
        return round(1 - used / (len(rows) * self.seq_len), 4)

    def _row(self, index: int) -> list[int]:
        epoch = 0
        while index >= len(self.rows_of_epoch(epoch)):
            index -= len(self.rows_of_epoch(epoch))
            epoch += 1
        return self.rows_of_epoch(epoch)[index]

    def next_batch(self) -> Batch:
        B, T = self.batch_size, self.seq_len
        first = self.sequence + self.rank * B
        inputs = np.full((B, T), self.pad_id, dtype=np.int64)
        targets = np.full((B, T), IGNORE, dtype=np.int64)
        documents = np.empty((B, T), dtype=np.int64)
        langs = np.zeros((B, T), dtype=np.int64)
        for b in range(B):
            at = 0
            for k, index in enumerate(self._row(first + b)):
                c = self.conversations[index]
                n = len(c.ids) - 1
                inputs[b, at:at + n] = c.ids[:-1]
                targets[b, at:at + n] = np.where(c.trained[1:], c.ids[1:], IGNORE)
                documents[b, at:at + n] = k
                langs[b, at:at + n] = c.lang
                at += n
            documents[b, at:] = len(self._row(first + b))  # padding: a document of its own
        self.sequence += B * self.world_size
        counts = np.bincount(langs[targets != IGNORE], minlength=len(self.languages))
        return Batch(input_ids=torch.from_numpy(inputs), targets=torch.from_numpy(targets), lang_ids=torch.from_numpy(langs),
                     lang_tokens={lang: int(n) for lang, n in zip(self.languages, counts)}, document_ids=torch.from_numpy(documents))

    def state_dict(self) -> dict:
        return {"sequence": self.sequence, "seq_len": self.seq_len, "seed": self.seed, "data_sha256": self.data_sha256}

    def load_state_dict(self, state: dict) -> None:
        for key in ("seq_len", "seed", "data_sha256"):
            if state.get(key) != getattr(self, key):
                raise FournilError(f"sft sampler state has {key} = {state.get(key)!r} but this run has {getattr(self, key)!r}; "
                                   f"resume with the same conversations, context length and seed")
        self.sequence = int(state["sequence"])


def encode_all(tokenizer, sources: list[tuple[str, int, list[list[dict]]]], seq_len: int, seed: int,  # noqa: ANN001
               heldout_fraction: float, skipped: Counter) -> tuple[list[Encoded], list[int], list[tuple[Encoded, list[dict]]]]:
    """(training conversations, the source index of each, held-out (conversation, messages)) from
    (name, language index, conversations) per source; what cannot be used is counted in `skipped`."""
    train, heldout, owners = [], [], []
    specials = special_strings(tokenizer)
    for k, (name, lang, conversations) in enumerate(sources):
        for messages in conversations:
            encoded = encode(tokenizer, messages, lang, name, specials)
            if isinstance(encoded, str):
                skipped[f"{name}: {encoded}"] += 1
            elif len(encoded.ids) - 1 > seq_len:
                skipped[f"{name}: longer_than_context"] += 1
            elif not encoded.trained[1:].any():
                skipped[f"{name}: no_trained_token"] += 1
            elif is_heldout(messages, seed, heldout_fraction):
                heldout.append((encoded, messages))
            else:
                train.append(encoded)
                owners.append(k)
    return train, owners, heldout


