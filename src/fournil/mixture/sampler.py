"""The sampler: packed sequences drawn from the token shards by the plan, deterministic and resumable.

The training stream is a sequence of sequences s = 0, 1, 2, ...; each is seq_len + 1 tokens read
from one group (shard), as a window of that group's tokens. Everything about sequence s is a pure
function of (plan, seed, s), so the state is one number and resume is exact:

- Curriculum: sequence s belongs to the stage whose token range holds s · seq_len.
- Group of s: each stage is cut into periods of its planned length, at most 2^20 sequences. A period
  gives every group its exact apportioned count (largest remainder of period × share), spread evenly
  through the period with a seeded jitter (stratified shuffle): shares are exact at each period's end
  and within a sequence or so per group at every point.
- Window of s: the k-th sequence of group g reads window k of g. Windows are the group's tokens cut
  every seq_len tokens (overlapping by one, so each token is a target once per epoch), taken in a
  seeded random order that changes every epoch; each epoch after the first rotates the cut points by
  a seeded offset, reading across the shard's end into its start. A group smaller than one sequence
  is read round and round.
- Ranks: call c of rank r reads sequences (c · world_size + r) · batch_size onward: no overlap, no gap.
- Canaries (canaries.json) overwrite the stream at their listed positions.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fournil.errors import FournilError
from fournil.mixture.shards import open_shard

PERIOD = 1 << 20


@dataclass
class Batch:
    input_ids: torch.LongTensor  # [B, T]
    targets: torch.LongTensor  # [B, T], -100 where not trained on
    lang_ids: torch.LongTensor  # [B, T], index into sampler.languages for each target token
    lang_tokens: dict[str, int]  # target tokens per language in this batch
    document_ids: torch.LongTensor | None  # [B, T] when document masking is on


def _apportion(total: int, shares: np.ndarray) -> np.ndarray:
    """Integer counts summing to `total`, as close to total × shares as possible (largest remainder)."""
    exact = total * shares / shares.sum()
    counts = np.floor(exact).astype(np.int64)
    remainder = total - int(counts.sum())
    if remainder:
        counts[np.argsort(-(exact - counts), kind="stable")[:remainder]] += 1
    return counts


class _Stage:
    """A curriculum stage in sequences: where it starts, its period and each group's count per period."""

    def __init__(self, first: int, planned: int, last: bool, shares: np.ndarray):
        self.first = first
        self.length = None if last else planned  # the last stage goes on past the budget
        self.period = max(1, min(PERIOD, planned))  # exact shares at the budget's end when it fits one period
        self.counts = _apportion(self.period, shares)


class MixtureSampler:
    """Batches of packed sequences for one data-parallel rank; see the module docstring."""

    def __init__(self, mixture_dir: Path, seq_len: int, batch_size: int, *, seed: int, rank: int = 0,
                 world_size: int = 1, document_masking: bool = False):
        if seq_len < 1 or batch_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad sampler shape: seq_len={seq_len}, batch_size={batch_size}, rank={rank}, world_size={world_size}")
        mixture_dir = Path(mixture_dir)
        plan_path = mixture_dir / "plan.json"
        try:
            raw = plan_path.read_bytes()
            plan = json.loads(raw)
        except FileNotFoundError:
            raise FournilError(f"{plan_path}: no such file; run `fournil mixture RECIPE` first") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise FournilError(f"{plan_path} is corrupt; delete {mixture_dir} and run `fournil mixture RECIPE` again") from None
        self.plan = plan
        self.plan_sha256 = hashlib.sha256(raw).hexdigest()
        self.seq_len, self.batch_size, self.seed = seq_len, batch_size, seed
        self.rank, self.world_size, self.document_masking = rank, world_size, document_masking
        self.languages: list[str] = list(plan["languages"])
        self.eos = int(plan["eos_id"])
        self._vocab_size = int(plan["vocab_size"])
        self.sequence = 0  # global index of the first sequence of the next call (all ranks together)

        keys = [g["key"] for g in plan["groups"]]
        self._group_lang = np.array([self.languages.index(g["lang"]) for g in plan["groups"]], dtype=np.int64)
        self._tokens = [
            open_shard(mixture_dir / g["shard"], plan["tokenizer_sha256"]).tokens if g["tokens"] else None
            for g in plan["groups"]
        ]
        self._window_counts = [max(1, g["tokens"] // seq_len) for g in plan["groups"]]
        self._stages: list[_Stage] = []
        for k, stage in enumerate(plan["stages"]):
            shares = np.array([stage["groups"].get(key, {}).get("share", 0.0) for key in keys])
            first = math.ceil(stage["start_token"] / seq_len)
            planned = math.ceil(stage["end_token"] / seq_len) - first
            self._stages.append(_Stage(first, planned, k == len(plan["stages"]) - 1, shares))
        self._firsts = np.array([s.first for s in self._stages])
        self._period_cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self._perm_cache: dict[int, tuple[int, int, np.ndarray]] = {}
        self._before = self._windows_before_stages()
        self._load_canaries(mixture_dir / "canaries.json")

    # -- the pure functions of s ---------------------------------------------------------------

    def _period(self, k: int, m: int) -> tuple[np.ndarray, np.ndarray]:
        """Group and rank-within-group of each position of period m of stage k (stratified shuffle)."""
        if (k, m) not in self._period_cache:
            counts = self._stages[k].counts
            group = np.repeat(np.arange(len(counts)), counts)
            rank = np.arange(len(group)) - np.repeat(np.cumsum(counts) - counts, counts)
            jitter = np.random.default_rng([self.seed, 1, k, m]).random(len(group))
            order = np.argsort((rank + jitter) / counts[group], kind="stable")
            if len(self._period_cache) > 1:
                self._period_cache.clear()
            self._period_cache[(k, m)] = (group[order], rank[order])
        return self._period_cache[(k, m)]

    def _windows_before_stages(self) -> list[np.ndarray]:
        """For each stage, how many windows of each group the stages before it used."""
        before = [np.zeros(len(self._window_counts), dtype=np.int64)]
        for k, stage in enumerate(self._stages[:-1]):
            full, rest = divmod(stage.length, stage.period)
            used = before[-1] + full * stage.counts
            if rest:
                used = used + np.bincount(self._period(k, full)[0][:rest], minlength=len(used))
            before.append(used)
        return before

    def _locate(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(group, window index within the group) of each global sequence in s."""
        stage_of = np.searchsorted(self._firsts, s, side="right") - 1
        groups, windows = np.empty_like(s), np.empty_like(s)
        for k in np.unique(stage_of):  # a batch spans one stage and period, rarely two
            stage = self._stages[k]
            mine = np.flatnonzero(stage_of == k)
            m, r = np.divmod(s[mine] - stage.first, stage.period)
            for period in np.unique(m):
                here = m == period
                group, rank = self._period(int(k), int(period))
                g = group[r[here]]
                groups[mine[here]] = g
                windows[mine[here]] = self._before[k][g] + period * stage.counts[g] + rank[r[here]]
        return groups, windows

    def _window_start(self, g: int, w: int) -> int:
        """Token offset where window w of group g starts in its shard."""
        epoch, j = divmod(w, self._window_counts[g])
        cached = self._perm_cache.get(g)
        if cached is None or cached[0] != epoch:
            rng = np.random.default_rng([self.seed, 2, g, epoch])
            shift = int(rng.integers(len(self._tokens[g]))) if epoch else 0
            cached = (epoch, shift, rng.permutation(self._window_counts[g]).astype(np.uint32))  # 4 bytes a window
            self._perm_cache[g] = cached
        return (cached[1] + int(cached[2][j]) * self.seq_len) % len(self._tokens[g])

    # -- canaries ------------------------------------------------------------------------------

    def _load_canaries(self, path: Path) -> None:
        try:
            canaries = json.loads(path.read_text()) if path.is_file() else []
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise FournilError(f"{path} is corrupt; delete the mixture folder and run `fournil mixture RECIPE` again") from None
        placed = sorted((p, i) for i, c in enumerate(canaries) for p in c["positions"])
        self._canary_ids = [np.array(c["token_ids"], dtype=np.int64) for c in canaries]
        self._canary_at = np.array([p for p, _ in placed], dtype=np.int64)
        self._canary_of = np.array([i for _, i in placed], dtype=np.int64)
        T = self.seq_len
        offsets = self._canary_at % T
        lengths = np.array([len(self._canary_ids[i]) for i in self._canary_of], dtype=np.int64)
        if len(placed) and ((offsets < 1) | (offsets + lengths + 1 > T)).any():
            raise FournilError(f"seq_len {T} cuts through canary slots of {self.plan.get('canary_slot')} tokens; use a "
                               f"seq_len that is a multiple of it, or plant no canaries (mixture.canaries.count: 0)")

    def _plant(self, rows: np.ndarray, first: int) -> None:
        """Write the canaries whose positions fall in rows (global sequences first, first + 1, ...)."""
        T = self.seq_len
        lo, hi = np.searchsorted(self._canary_at, [first * T, (first + len(rows)) * T])
        for p, i in zip(self._canary_at[lo:hi].tolist(), self._canary_of[lo:hi].tolist()):
            row, o = divmod(p - first * T, T)
            ids = self._canary_ids[i]
            rows[row, o - 1] = self.eos
            rows[row, o:o + len(ids)] = ids
            rows[row, o + len(ids)] = self.eos

    def _check_ids(self, rows: np.ndarray, groups: np.ndarray) -> None:
        """A token id past the vocabulary (a damaged shard) is an error here, not an index error in the model."""
        if rows.max(initial=0) >= self._vocab_size:
            row = int(np.flatnonzero(rows.max(axis=1) >= self._vocab_size)[0])
            shard = self.plan["groups"][int(groups[row])]["shard"]
            raise FournilError(f"shard {shard}: token id {int(rows[row].max())} is outside the vocabulary of {self._vocab_size}: "
                               f"the shard is damaged; rerun the mixture stage: `fournil mixture RECIPE --force`")

    # -- the public side -----------------------------------------------------------------------

    @property
    def stage(self) -> str:
        """Name of the curriculum stage the next batch is drawn from."""
        return self.plan["stages"][int(np.searchsorted(self._firsts, self.sequence, side="right")) - 1]["name"]

    def next_batch(self) -> Batch:
        B, T = self.batch_size, self.seq_len
        first = self.sequence + self.rank * B
        groups, windows = self._locate(np.arange(first, first + B))
        rows = np.empty((B, T + 1), dtype=np.int64)
        for row, g, w in zip(rows, groups.tolist(), windows.tolist()):
            tokens, start = self._tokens[g], self._window_start(g, w)
            if start + T + 1 <= len(tokens):
                row[:] = tokens[start:start + T + 1]
            else:  # the window runs past the shard's end into its start
                row[:] = np.take(tokens, np.arange(start, start + T + 1), mode="wrap")
        self._plant(rows, first)
        self._check_ids(rows, groups)
        langs = self._group_lang[groups]
        self.sequence += B * self.world_size
        inputs, targets = rows[:, :-1], rows[:, 1:].copy()
        document_ids = None
        if self.document_masking:
            ends = inputs == self.eos
            document_ids = torch.zeros((B, T), dtype=torch.long)  # a document's EOS belongs to it
            document_ids[:, 1:] = torch.cumsum(torch.from_numpy(ends[:, :-1]), 1)  # torch's is 4× numpy's here
            np.putmask(targets, ends, -100)  # after EOS comes another document, which the position cannot see
            counts = T - ends.sum(axis=1)
        else:
            counts = np.full(B, T)
        per_lang = np.bincount(langs, weights=counts, minlength=len(self.languages))
        return Batch(
            input_ids=torch.from_numpy(np.ascontiguousarray(inputs)),
            targets=torch.from_numpy(targets),
            lang_ids=torch.from_numpy(np.repeat(langs, T).reshape(B, T)),
            lang_tokens={lang: int(n) for lang, n in zip(self.languages, per_lang)},
            document_ids=document_ids,
        )

    def state_dict(self) -> dict:
        return {"sequence": self.sequence, "seq_len": self.seq_len, "seed": self.seed, "plan_sha256": self.plan_sha256}

    def load_state_dict(self, state: dict) -> None:
        for key in ("seq_len", "seed", "plan_sha256"):
            if state.get(key) != getattr(self, key):
                raise FournilError(f"sampler state has {key} = {state.get(key)!r} but this sampler has {getattr(self, key)!r}; "
                                   f"resume with the same mixture folder, seq_len and seed")
        self.sequence = int(state["sequence"])
