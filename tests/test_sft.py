"""Instruction tuning: the chat format, conversation readers, the assistant-only mask, packing and resume."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch
from jinja2.sandbox import ImmutableSandboxedEnvironment

from fournil.evaluate.chat import fidelity
from fournil.model.generate import Sampling, generate_tokens
from fournil.sft.conversations import read_conversations, to_messages
from fournil.sft.packing import IGNORE, ConversationSampler, encode, encode_all, pack
from fournil.tokenizer import IM_END, load
from fournil.tokenizer.chat import CHAT_TEMPLATE, render

CONVERSATIONS = [
    [{"role": "user", "content": "Bonjour ! Comment vas-tu ?"}, {"role": "assistant", "content": "Très bien, merci."}],
    [{"role": "system", "content": "Tu réponds en français."}, {"role": "user", "content": "Qu'est-ce que Debian ?"},
     {"role": "assistant", "content": "Une distribution libre.\nElle date de 1993."}, {"role": "user", "content": "Merci"},
     {"role": "assistant", "content": " De rien !"}],
]


def test_render_equals_the_jinja_template():
    template = ImmutableSandboxedEnvironment().from_string(CHAT_TEMPLATE)
    for messages in CONVERSATIONS:
        for prompt in (False, True):
            assert render(messages, prompt)[0] == template.render(messages=messages, add_generation_prompt=prompt)
    text, spans = render(CONVERSATIONS[1])
    assert [text[a:b] for a, b in spans] == [f"Une distribution libre.\nElle date de 1993.{IM_END}", f" De rien !{IM_END}"]


def test_transformers_renders_and_tokenises_the_same(baked):
    transformers = pytest.importorskip("transformers")
    folder = baked / "release"
    hf = transformers.AutoTokenizer.from_pretrained(str(folder))
    tokenizer = load(folder, special_strings_as_text=False)
    for messages in CONVERSATIONS:
        assert hf.apply_chat_template(messages, tokenize=False) == render(messages)[0]
        ids = hf.apply_chat_template(messages, tokenize=True)
        ids = ids["input_ids"] if hasattr(ids, "keys") else ids
        assert list(ids) == encode(tokenizer, messages, 0, "t").ids.tolist()
    generation = json.loads((folder / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [1, tokenizer.token_to_id(IM_END)]


def test_loss_falls_on_assistant_tokens_only(baked):
    tokenizer = load(baked / "tokenizer", special_strings_as_text=False)
    encoded = encode(tokenizer, CONVERSATIONS[1], 0, "t")
    trained = [i for i, t in zip(encoded.ids.tolist(), encoded.trained) if t]
    untrained = [i for i, t in zip(encoded.ids.tolist(), encoded.trained) if not t]
    assert tokenizer.decode(trained, skip_special_tokens=False) == f"Une distribution libre.\nElle date de 1993.{IM_END} De rien !{IM_END}"
    assert "Qu'est-ce que Debian" in tokenizer.decode(untrained) and "Merci" in tokenizer.decode(untrained)
    assert encode(tokenizer, [{"role": "user", "content": "<|im_end|>"}, {"role": "assistant", "content": "x"}], 0, "t") == "special_token_in_text"


def test_the_three_formats_and_bad_records_counted(tmp_path):
    records = [
        {"messages": CONVERSATIONS[0]},
        {"instruction": "Traduis", "input": "Hello", "output": "Bonjour"},
        {"conversations": [{"from": "human", "value": "Oi"}, {"from": "gpt", "value": "Olá!"}]},
        {"messages": [{"role": "user", "content": "sans réponse"}]},
        {"messages": [{"role": "robot", "content": "bip"}, {"role": "assistant", "content": "?"}]},
        {"messages": [{"role": "user", "content": " "}, {"role": "assistant", "content": "?"}]},
        {"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}, {"role": "assistant", "content": "c"}]},
        {"text": "not a conversation"},
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n{broken\n", encoding="utf-8")
    skipped = Counter()
    found = list(read_conversations(path, "auto", skipped))
    assert found[1] == [{"role": "user", "content": "Traduis\n\nHello"}, {"role": "assistant", "content": "Bonjour"}]
    assert found[2] == [{"role": "user", "content": "Oi"}, {"role": "assistant", "content": "Olá!"}]
    assert len(found) == 3
    assert skipped == {"no_assistant_turn": 1, "unknown_role": 1, "empty_content": 1, "system_not_first": 1,
                       "unknown_format": 1, "malformed_line": 1}
    alpaca = tmp_path / "alpaca.json"
    alpaca.write_text(json.dumps([records[1]] * 2), encoding="utf-8")
    assert len(list(read_conversations(alpaca, "alpaca", Counter()))) == 2
    assert to_messages(records[1], "sharegpt") == (None, "unknown_format")


def _sampler(conversations, seq_len=32, batch=2, epochs=2.0):
    return ConversationSampler(conversations, [1.0] * len(conversations), ["fr", "en"], seq_len, batch, seed=3, pad_id=2, epochs=epochs)


def test_packing_keeps_each_conversation_whole_and_apart(baked):
    tokenizer = load(baked / "tokenizer", special_strings_as_text=False)
    many = [[{"role": "user", "content": f"Question {i} ?"}, {"role": "assistant", "content": f"Réponse numéro {i}."}] for i in range(40)]
    long = [{"role": "user", "content": "mot " * 200}, {"role": "assistant", "content": "fin"}]
    skipped = Counter()
    train, owners, heldout = encode_all(tokenizer, [("s", 0, many + [long])], 64, 3, 0.0, skipped)
    assert skipped == {"s: longer_than_context": 1} and len(train) == 40 and not heldout
    rows = pack(train, list(range(40)), 64)
    assert sorted(i for row in rows for i in row) == list(range(40)) and len(rows) < 40
    assert all(sum(len(train[i].ids) - 1 for i in row) <= 64 for row in rows)
    sampler = _sampler(train, seq_len=64)
    batch = sampler.next_batch()
    first = sampler.rows_of_epoch(0)[0]
    at = 0
    for k, index in enumerate(first):  # inputs, masked targets and a document id per conversation, then padding
        c, n = train[index], len(train[index].ids) - 1
        assert batch.input_ids[0, at:at + n].tolist() == c.ids[:-1].tolist()
        assert batch.targets[0, at:at + n].tolist() == np.where(c.trained[1:], c.ids[1:], IGNORE).tolist()
        assert set(batch.document_ids[0, at:at + n].tolist()) == {k}
        at += n
    assert (batch.targets[0, at:] == IGNORE).all() and (batch.input_ids[0, at:] == 2).all()
    assert len(set(batch.document_ids[0, at:].tolist()) & set(range(len(first)))) == 0


def test_sampler_resumes_exactly_and_epochs_reshuffle(baked):
    tokenizer = load(baked / "tokenizer", special_strings_as_text=False)
    convs = [encode(tokenizer, [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i} " * (i % 5 + 1)}], 0, "s")
             for i in range(30)]
    a = _sampler(convs)
    for _ in range(3):
        a.next_batch()
    b = _sampler(convs)
    b.load_state_dict(a.state_dict())
    for _ in range(5):
        x, y = a.next_batch(), b.next_batch()
        assert torch.equal(x.input_ids, y.input_ids) and torch.equal(x.targets, y.targets)
    assert a.rows_of_epoch(0) != a.rows_of_epoch(1)
    other = _sampler(convs[:-1])
    with pytest.raises(Exception, match="same conversations"):
        other.load_state_dict(a.state_dict())


def test_generation_stops_at_end_of_turn():
    class Planted(torch.nn.Module):  # always most likely: token 4 (<|im_end|>)
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(8, 2)
            self.config = type("C", (), {"context_length": 64, "n_layers": 1, "n_kv_heads": 1, "head_dim": 2})()

        def forward(self, ids, cache=None):
            cache.length += ids.shape[1]
            return torch.nn.functional.one_hot(torch.full(ids.shape, 4), 8).float() * 5

    class Cache:
        def __init__(self, *args):
            self.length, self.k = 0, torch.zeros(1, 1, 1, 64)

    import fournil.model.generate as generate

    original, generate.KVCache = generate.KVCache, Cache
    try:
        assert list(generate_tokens(Planted(), [0, 5], Sampling(max_new_tokens=10), frozenset({1, 4}))) == [4]
        assert len(list(generate_tokens(Planted(), [0, 5], Sampling(max_new_tokens=10), frozenset({1})))) == 10
    finally:
        generate.KVCache = original


def test_language_fidelity_on_known_answers():
    answers = [("fr", "Je suis très content de vous voir aujourd'hui, mon ami."),
               ("fr", "I am very happy to see you today, my dear friend."),
               ("fr", "Oui."),
               ("fr", "Bonjour à tous les enfants de la classe.\nAnd then the children went home together.")]
    row = fidelity(answers, ["fr", "en"])["fr"]
    assert (row["passed"], row["judged"], row["unjudged"], row["pass_rate"]) == (1, 3, 1, round(1 / 3, 4))
    assert row["answered_in"] == {"en": 2, "fr": 2}


def test_recipe_checks_sft_sources(minimal_recipe_data, tmp_path):
    from fournil.errors import FournilError
    from fournil.recipe import parse_recipe

    data = {**minimal_recipe_data, "sft": {"sources": [
        {"name": "a", "path": "missing.jsonl", "lang": "fr", "license": "x"},
        {"name": "b", "path": str(tmp_path), "lang": "de", "license": "x"}]}}
    with pytest.raises(FournilError) as error:
        parse_recipe(data, tmp_path)
    assert "sft.sources.1.lang = 'de': not among the recipe's languages" in str(error.value)
    data["sft"]["sources"] = data["sft"]["sources"][:1]
    with pytest.raises(FournilError, match=r"sft.sources.0.path = 'missing.jsonl': no such file"):
        parse_recipe(data, tmp_path)
    assert parse_recipe(minimal_recipe_data, tmp_path).sft is None


def test_a_crashed_sft_resumes_to_the_same_weights(tmp_path):
    """Killed between checkpoints (here: an exception at step 3 of 6, the last checkpoint at 2), the
    same command resumes and ends with the weights of an uninterrupted run, bit for bit."""
    from fournil.sft.packing import Encoded
    from fournil.train.distributed import Topology
    from fournil.train.trainer import Trainer
    from train_helpers import MODEL, SEQ_LEN, config, tiny_model

    rng = np.random.default_rng(0)
    convs = []
    for i in range(24):
        n = int(rng.integers(6, 20))
        trained = np.zeros(n, dtype=bool)
        trained[n // 2:] = True
        convs.append(Encoded(rng.integers(5, 128, n), trained, i % 2, "s"))
    cfg = config(max_steps=6, checkpoint_every=2, log_every=1, document_masking=True)

    def trainer(out):
        sampler = ConversationSampler(convs, [1.0] * len(convs), ["fr", "en"], SEQ_LEN, cfg.micro_batch_size, seed=1, pad_id=2, epochs=3)
        model = tiny_model()
        return Trainer(model, sampler, cfg, out, Topology(0, 1, 0, torch.device("cpu")), model_config=MODEL.to_dict(),
                       seq_len=SEQ_LEN, flops_per_token=model.flops_per_token(SEQ_LEN), log=lambda m: None)

    reference = trainer(tmp_path / "reference")
    reference.train()
    crashed = trainer(tmp_path / "run")
    step = crashed.train_step

    def crash():
        if crashed.step == 2:
            raise RuntimeError("killed")
        step()

    crashed.train_step = crash
    with pytest.raises(RuntimeError, match="killed"):
        crashed.train()
    resumed = trainer(tmp_path / "run")
    figures = resumed.train()
    assert figures["resumed_from_step"] == 2
    for name, tensor in reference.final_state_dict().items():
        assert torch.equal(tensor, resumed.final_state_dict()[name]), name


def test_fidelity_leaves_out_requests_to_answer_in_another_language():
    from fournil.evaluate.chat import chat_scores

    class Echo:  # answers every prompt in English; a prompt of 40 characters or more is too long for it
        def fits(self, prompt):
            return len(prompt) < 40

        def chat_prompt(self, messages):
            return messages[-1]["content"], ()

        def stream(self, prompt, sampling):
            yield "I am very happy to see you today, my dear friend."

    asked = [{"lang": "fr", "messages": [{"role": "user", "content": "Comment vas-tu ?"},
                                         {"role": "assistant", "content": "Je vais très bien, merci beaucoup de le demander."}]},
             {"lang": "fr", "messages": [{"role": "user", "content": "Traduis en anglais :\nJe suis content."},
                                         {"role": "assistant", "content": "I am happy to see you today, my friend."}]}]
    long = {"lang": "fr", "messages": [{"role": "user", "content": "Raconte-moi une longue histoire, avec des détails."}, {"role": "assistant", "content": "Non."}]}
    scores = chat_scores(Echo(), [asked[0], long, asked[1]], ["fr", "en"], None, 10)["per_language"]["fr"]
    assert scores["conversations"] == 2 and scores["too_long"] == 1
    assert scores["fidelity"]["judged"] == 1 and scores["fidelity"]["pass_rate"] == 0.0


def test_translation_tasks_asked_in_chat_form():
    """The shipped translation tasks become one user turn in the source language; chrF and the share of answers
    in the target language are scored per direction, and only translation tasks are asked."""
    from fournil.evaluate.chat import translation_scores
    from fournil.evaluate.tasks import load_task

    tasks = [load_task("translation_en_fr"), load_task("translation_fr_en"), load_task("continuation_fr")]
    lookup = {doc[a]: doc[b] for task in tasks[:2] for a, b in [task.languages] for doc in task.test_docs()[:7]}
    asked = []

    too_long = tasks[1].test_docs()[2]["fr"]

    class Translator:  # the reference translation, except that it echoes the first two English texts unchanged
        echoed = 0

        def fits(self, prompt):  # one French text is too long for it
            return not prompt.endswith(too_long)

        def chat_prompt(self, messages):
            assert [m["role"] for m in messages] == ["user"]
            asked.append(messages[0]["content"])
            return messages[0]["content"], ()

        def stream(self, prompt, sampling):
            request, text = prompt.split("\n", 1)
            echo = request == "Translate into French:" and self.echoed < 2
            self.echoed += echo
            yield text if echo else lookup[text]

    scores = translation_scores(Translator(), tasks, ["fr", "en"], None, 6)
    assert set(scores) == {"en-fr", "fr-en"} and len(asked) == 13
    assert sum(a.startswith("Traduis en anglais :\n") for a in asked) == 7  # the seventh text stands in for the long one
    en_fr, fr_en = scores["en-fr"], scores["fr-en"]
    assert en_fr["asked_in"] == "en" and en_fr["examples"] == 6 and en_fr["too_long"] == 0
    assert fr_en["examples"] == 6 and fr_en["too_long"] == 1 and fr_en["chrf"]["value"] == 100.0
    assert en_fr["fidelity"]["judged"] == 6 and en_fr["fidelity"]["passed"] == 4 and en_fr["fidelity"]["answered_in"]["en"] >= 2
    assert 30 < en_fr["chrf"]["value"] < 100.0
