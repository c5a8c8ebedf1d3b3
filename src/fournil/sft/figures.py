"""The sft stage's figures: the training loop's, and what went in (sources, skipped conversations)."""

from __future__ import annotations

from fournil.schema import Figures
from fournil.train.figures import TrainFigures


class ConversationSourceFigures(Figures):
    name: str | None = None
    lang: str | None = None
    license: str | None = None
    format: str | None = None
    conversations: int | None = None  # used, training and held out
    heldout_conversations: int | None = None
    trained_tokens: int | None = None  # assistant tokens per epoch (one copy each)
    skipped: dict[str, int] | None = None  # by reason


class LanguageTuning(Figures):
    final_loss: float | None = None  # on assistant tokens, the last steps
    heldout_loss: float | None = None  # on assistant tokens of held-out conversations
    heldout_conversations: int | None = None


class SftFigures(TrainFigures):
    instruction_tuned: bool | None = None
    init_from: str | None = None
    chat_template: str | None = None
    tokenizer: str | None = None  # the folder whose tokenizer the model speaks: init_from's own, else the run's (shipped in final/)
    added_tokens: list[str] | None = None  # the chat tokens it lacked, added with mean embeddings
    epochs: float | None = None  # passes over the training conversations the steps made (sft.max_steps can cut them short)
    sources: list[ConversationSourceFigures] | None = None
    per_language: dict[str, LanguageTuning] | None = None
    padding_share: float | None = None  # of the packed positions, in the first epoch
