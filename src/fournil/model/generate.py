"""Text generation with a KV cache: greedy, temperature, top-k, top-p, repetition penalty, stop strings,
streamed as text arrives. Greedy decoding picks the same tokens as transformers' `generate`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from fournil.errors import FournilError
from fournil.model.llama import KVCache, Llama
from fournil.tokenizer import IM_END


@dataclass
class Sampling:
    """How to pick each next token; temperature 0 is greedy (argmax)."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_k: int = 0  # 0: all tokens
    top_p: float = 1.0  # keep the most likely tokens whose probabilities first reach top_p
    repetition_penalty: float = 1.0  # > 1 makes tokens already present less likely (CTRL, as transformers does)
    stop: tuple[str, ...] = field(default_factory=tuple)
    seed: int | None = None

    def __post_init__(self) -> None:
        problems = [f"{name} = {value}: {rule}" for name, value, rule, bad in (
            ("max_new_tokens", self.max_new_tokens, "must be ≥ 1", self.max_new_tokens < 1),
            ("temperature", self.temperature, "must be ≥ 0", self.temperature < 0),
            ("top_k", self.top_k, "must be ≥ 0", self.top_k < 0),
            ("top_p", self.top_p, "must be in (0, 1]", not 0 < self.top_p <= 1),
            ("repetition_penalty", self.repetition_penalty, "must be > 0", self.repetition_penalty <= 0),
        ) if bad]
        if problems:
            raise FournilError("; ".join(problems))


def pick(logits: Tensor, history: Tensor, s: Sampling, generator: torch.Generator | None) -> int:
    """The next token from float32 logits [V], given the ids so far (for the repetition penalty)."""
    if s.repetition_penalty != 1.0 and len(history):
        seen = logits.gather(0, history)
        logits = logits.scatter(0, history, torch.where(seen < 0, seen * s.repetition_penalty, seen / s.repetition_penalty))
    if s.temperature == 0:
        return int(logits.argmax())
    logits = logits / s.temperature
    if s.top_k:
        kth = torch.topk(logits, min(s.top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if s.top_p < 1.0:
        ordered, order = logits.sort(descending=True)
        probs = ordered.softmax(-1)
        before = probs.cumsum(-1) - probs  # mass of the more likely tokens
        logits = logits.scatter(0, order, ordered.masked_fill(before >= s.top_p, float("-inf")))
    return int(torch.multinomial(logits.softmax(-1), 1, generator=generator))


@torch.no_grad()
def generate_tokens(model: Llama, prompt_ids: list[int], s: Sampling, eos_ids: frozenset[int] = frozenset()) -> Iterator[int]:
    """Yield new token ids one by one, ending after an EOS id, after max_new_tokens, or at the context's end."""
    context = model.config.context_length
    if not prompt_ids:
        raise FournilError("empty prompt: give at least one token")
    if len(prompt_ids) >= context:
        raise FournilError(f"the prompt has {len(prompt_ids)} tokens; the model reads at most {context}: shorten it")
    device = model.embed.weight.device
    generator = torch.Generator(device).manual_seed(s.seed) if s.seed is not None else None
    cache = KVCache(model.config, 1, min(context, len(prompt_ids) + s.max_new_tokens), device, model.embed.weight.dtype)
    history = torch.tensor(prompt_ids, device=device)
    logits = model(history[None], cache=cache)[0, -1].float()
    for _ in range(s.max_new_tokens):
        token = pick(logits, history, s, generator)
        yield token
        if token in eos_ids or cache.length >= cache.k.shape[3]:
            return
        history = torch.cat([history, history.new_tensor([token])])
        logits = model(history[None, -1:], cache=cache)[0, -1].float()


class Prompter:
    """A model folder's tokenizer, chat template and context length, without its weights: all that laying out a
    conversation and deciding whether it fits needs (the weights of a 7B model are not read for that)."""

    def __init__(self, model_dir: Path, tokenizer_dir: Path | None = None, context_length: int | None = None) -> None:
        from tokenizers import Tokenizer

        from fournil.model.hf import special_tokens
        from fournil.model.io import find_tokenizer, model_config

        tokenizer_dir = Path(tokenizer_dir) if tokenizer_dir else find_tokenizer(model_dir)
        self.tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
        self.special = special_tokens(tokenizer_dir)
        # a turn ends at <|im_end|> (fournil.tokenizer.chat), a text at EOS
        self.eos_ids = frozenset({self.special["eos"], self.tokenizer.token_to_id(IM_END)} - {None})
        settings = tokenizer_dir / "tokenizer_config.json"
        self.chat_template = json.loads(settings.read_text(encoding="utf-8")).get("chat_template") if settings.is_file() else None
        self.context_length = context_length or model_config(model_dir).context_length

    def fits(self, prompt: str) -> bool:
        """Whether the model can read `prompt` and still answer (it leaves at least one position)."""
        return len(self.tokenizer.encode(prompt, add_special_tokens=True).ids) < self.context_length

    def chat_prompt(self, messages: list[dict[str, str]]) -> tuple[str, tuple[str, ...]]:
        """The prompt for a conversation and the stop strings that end the assistant's turn: the
        tokenizer's chat template when it has one, a plain 'user: / assistant:' layout otherwise."""
        if self.chat_template:
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            template = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(self.chat_template)
            names = {f"{role}_token": self.tokenizer.id_to_token(i) for role, i in self.special.items() if role in ("bos", "eos", "pad") and i is not None}
            return template.render(messages=messages, add_generation_prompt=True, **names), ()
        text = "".join(f"{m['role']}: {m['content']}\n" for m in messages)
        return text + "assistant:", ("\nuser:",)


class Generator(Prompter):
    """A model and its tokenizer, turning prompts into streamed text."""

    def __init__(self, model_dir: Path, tokenizer_dir: Path | None = None, device: str = "auto") -> None:
        from fournil.model.io import load_model, pick_device

        device = pick_device(device, "--device")
        self.model = load_model(model_dir, device)
        if device.type != "cpu":
            self.model = self.model.to(torch.bfloat16)
        super().__init__(model_dir, tokenizer_dir, self.model.config.context_length)

    def stream(self, prompt: str, s: Sampling) -> Iterator[str]:
        """Yield the continuation of `prompt` piece by piece, cut before the first stop string. Text that
        could still become a stop string, or an incomplete UTF-8 character, is held back until it cannot."""
        prompt_ids = self.tokenizer.encode(prompt, add_special_tokens=True).ids
        hold = max((len(stop) for stop in s.stop), default=1) - 1
        new: list[int] = []
        shown = 0
        for token in generate_tokens(self.model, prompt_ids, s, self.eos_ids):
            if token in self.eos_ids:
                break
            new.append(token)
            text = self.tokenizer.decode(new)
            cuts = [i for i in (text.find(stop) for stop in s.stop) if i >= 0]
            if cuts:
                yield text[shown:min(cuts)]
                return
            if not text.endswith("\ufffd") and len(text) - hold > shown:
                yield text[shown:len(text) - hold]
                shown = len(text) - hold
        text = self.tokenizer.decode(new)
        if len(text) > shown:
            yield text[shown:]

