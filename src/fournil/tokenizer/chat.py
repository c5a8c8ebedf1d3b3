"""The chat format: ChatML (as CroissantLLMChat), on the tokenizer's reserved tokens 3 and 4.

One owner for the layout of a conversation. `CHAT_TEMPLATE` is the Jinja text that goes into
`tokenizer_config.json` (transformers' `apply_chat_template`, lm-eval's `--apply_chat_template`) and
the GGUF (`tokenizer.chat_template`, which llama.cpp recognises as ChatML); `render` lays a
conversation out the same way in Python and says which characters the model learns to write (each
assistant answer and the `<|im_end|>` that closes it), for the sft stage's loss mask.
"""

from __future__ import annotations

from fournil.tokenizer import IM_END, IM_START

ROLES = ("system", "user", "assistant")

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '" + IM_START + "' + message['role'] + '\n' + message['content'] + '" + IM_END + "' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '" + IM_START + "assistant\n' }}{% endif %}"
)


def render(messages: list[dict[str, str]], add_generation_prompt: bool = False) -> tuple[str, list[tuple[int, int]]]:
    """The conversation as text, and the [start, end) character spans of what the assistant writes."""
    parts, spans, length = [], [], 0
    for message in messages:
        head = f"{IM_START}{message['role']}\n"
        answer = f"{message['content']}{IM_END}"
        if message["role"] == "assistant":
            spans.append((length + len(head), length + len(head) + len(answer)))
        parts += [head, answer, "\n"]
        length += len(head) + len(answer) + 1
    if add_generation_prompt:
        parts.append(f"{IM_START}assistant\n")
    return "".join(parts), spans
