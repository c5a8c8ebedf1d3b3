"""sft.init_from a model folder with its own tokenizer: a transformers Llama folder, tuned with its tokenizer plus ChatML's
tokens, and everything downstream (evaluate, release, GGUF, generation) on that tokenizer."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from tokenizers import Tokenizer

from conftest import MINI, ROOT
from fournil.errors import FournilError
from fournil.recipe import load_recipe
from fournil.runs import run_all, run_stage
from fournil.tokenizer import CHAT_TOKENS, IM_END, IM_START

transformers = pytest.importorskip("transformers")

MESSAGES = [{"role": "system", "content": "Tu réponds en français."}, {"role": "user", "content": "Bonjour ! Comment vas-tu ?"},
            {"role": "assistant", "content": "Très bien, merci."}]
QUICK = ["evaluate.max_examples=3", "evaluate.max_new_tokens=4", "release.gguf=true", "release.gguf_types=[f32]"]


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    """A tiny LlamaForCausalLM and a byte-level BPE without ChatML's tokens (<s>, </s> only), as save_pretrained writes them."""
    from tokenizers import decoders, models, pre_tokenizers, processors, trainers

    folder = tmp_path_factory.mktemp("llama")
    lines = (ROOT / "data" / "instructions" / "chatterbot-fr.jsonl").read_text(encoding="utf-8").splitlines()
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(lines, trainers.BpeTrainer(vocab_size=400, special_tokens=["<s>", "</s>"],
                                                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>").save_pretrained(folder)
    config = transformers.LlamaConfig(vocab_size=400, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2, max_position_embeddings=256, bos_token_id=0, eos_token_id=1)
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def copy_run(baked, tmp_path, stages=("corpus", "tokenizer", "mixture", "train")):
    """The baked run's first stages, so the sft stage and those after it run afresh here (the shared bake is left alone)."""
    for stage in stages:
        shutil.copytree(baked / stage, tmp_path / "mini" / stage, ignore=shutil.ignore_patterns("step_*"))
    return tmp_path / "mini"


@pytest.fixture(scope="module")
def tuned(baked, llama, tmp_path_factory):
    """The mini run with its sft stage tuning the Llama folder, then evaluate and release (with a GGUF) on it."""
    run_dir = copy_run(baked, tmp_path_factory.mktemp("runs"))
    recipe = load_recipe(MINI, [f"sft.init_from={llama}", *QUICK])
    run_all(recipe, run_dir, log=lambda message: None)
    return run_dir


def test_the_tuned_model_ships_the_folders_tokenizer_with_chatml_added(tuned, llama):
    theirs, ours = Tokenizer.from_file(str(llama / "tokenizer.json")), Tokenizer.from_file(str(tuned / "sft" / "final" / "tokenizer.json"))
    assert ours.get_vocab(with_added_tokens=True) == {**theirs.get_vocab(with_added_tokens=True), IM_START: 400, IM_END: 401}
    before, after = json.loads((llama / "tokenizer.json").read_text()), json.loads((tuned / "sft" / "final" / "tokenizer.json").read_text())
    assert after["model"] == before["model"] and after["pre_tokenizer"] == before["pre_tokenizer"]
    assert [t["content"] for t in after["added_tokens"] if t["special"]] == ["<s>", "</s>", *CHAT_TOKENS]
    figures = json.loads((tuned / "sft" / "manifest.json").read_text())["figures"]
    assert (figures["tokenizer"], figures["added_tokens"], figures["model"]["vocab_size"]) == (str(llama), list(CHAT_TOKENS), 402)
    card = (tuned / "release" / "README.md").read_text(encoding="utf-8")
    assert f"The model speaks the tokenizer of `{llama}`, with `{IM_START}`, `{IM_END}` added as special tokens" in card


def test_the_release_loads_in_transformers_and_templates_the_trained_ids(tuned):
    from fournil.sft.packing import encode
    from fournil.sft.tokenizer import read_tokenizer

    release = tuned / "release"
    hf = transformers.AutoTokenizer.from_pretrained(str(release))
    ids = hf.apply_chat_template(MESSAGES, tokenize=True)
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    assert list(ids) == encode(read_tokenizer(tuned / "sft" / "final"), MESSAGES, 0, "t").ids.tolist()
    assert hf.convert_ids_to_tokens(list(ids))[0] == IM_START and IM_END in hf.convert_ids_to_tokens(list(ids))
    model = transformers.AutoModelForCausalLM.from_pretrained(str(release), dtype=torch.float32).eval()
    assert model.config.vocab_size == 402 and model.generation_config.eos_token_id == [1, 401]
    assert Tokenizer.from_file(str(release / "tokenizer.json")).to_str() == Tokenizer.from_file(str(tuned / "sft" / "final" / "tokenizer.json")).to_str()


def _end_of_turn_always(module):
    """Make the output head put the end-of-turn token first at every position."""
    return module.register_forward_hook(lambda m, args, out: out.index_add(-1, torch.tensor([401]), torch.full((*out.shape[:-1], 1), 1e4)))


def test_generation_stops_at_the_end_of_turn(tuned):
    from fournil.model.generate import Generator, Sampling

    release = tuned / "release"
    model = transformers.AutoModelForCausalLM.from_pretrained(str(release), dtype=torch.float32).eval()
    hf = transformers.AutoTokenizer.from_pretrained(str(release))
    prompt = hf.apply_chat_template(MESSAGES[:2], add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with _end_of_turn_always(model.lm_head):
        out = model.generate(**prompt, max_new_tokens=5, do_sample=False)
    assert out[0, prompt["input_ids"].shape[1]:].tolist() == [401]
    for folder in (tuned / "sft" / "final", release):  # `fournil chat` and `generate` on either folder
        generator = Generator(folder, device="cpu")
        assert generator.eos_ids == {1, 401}
        text, stops = generator.chat_prompt(MESSAGES[:2])
        assert text.endswith(f"{IM_END}\n{IM_START}assistant\n") and stops == ()
        with _end_of_turn_always(generator.model.lm_head):
            assert "".join(generator.stream(text, Sampling(max_new_tokens=5))) == ""


def test_evaluate_scores_the_tuned_model_with_its_tokenizer(tuned):
    from fournil.corpus.heldout import heldout_samples

    results = json.loads((tuned / "evaluate" / "results.json").read_text())
    sft = results["checkpoints"][-1]
    assert sft["name"] == "sft" and results["chat"]["per_language"] and "memorisation" not in results
    theirs = Tokenizer.from_file(str(tuned / "sft" / "final" / "tokenizer.json"))
    for lang, docs in heldout_samples(tuned / "corpus", ["fr", "en"], 10).items():  # after BOS, every token scored once
        assert sft["per_language"][lang]["tokens"] == sum(len(theirs.encode(d, add_special_tokens=False).ids) for d in docs)


def test_the_gguf_carries_the_tuned_tokenizer(tuned):
    from gguf import GGUFReader

    from fournil.tokenizer.chat import CHAT_TEMPLATE

    (gguf_file,) = (tuned / "release").glob("*.gguf")
    reader = GGUFReader(gguf_file)

    def field(name):
        f = reader.fields[name]
        return [bytes(f.parts[i]).decode() if f.types[-1].name == "STRING" else f.parts[i][0].item() for i in f.data]

    tokens = field("tokenizer.ggml.tokens")
    assert len(tokens) == 402 and tokens[400:] == list(CHAT_TOKENS) and tokens[1] == "</s>"
    assert field("tokenizer.ggml.eos_token_id") == [1] and field("tokenizer.chat_template") == [CHAT_TEMPLATE]


def test_a_release_that_has_chatml_is_tuned_with_its_tokenizer_as_is(baked, tmp_path):
    from fournil.model.io import tokenizer_of
    from fournil.tokenizer.chat import CHAT_TEMPLATE

    run_dir = copy_run(baked, tmp_path, ("tokenizer", "train"))
    manifest = run_stage(load_recipe(MINI, [f"sft.init_from={baked / 'release'}"]), run_dir, "sft", log=lambda message: None)
    final = run_dir / "sft" / "final"
    assert manifest["figures"]["added_tokens"] == [] and manifest["figures"]["model"]["vocab_size"] == 1024
    assert (final / "tokenizer.json").read_bytes() == (baked / "release" / "tokenizer.json").read_bytes()
    assert json.loads((final / "tokenizer_config.json").read_text())["chat_template"] == CHAT_TEMPLATE
    assert tokenizer_of(final, run_dir / "tokenizer") == final
    # tuned from the run's own model, the sft model reads the run's tokenizer, as before
    assert not (baked / "sft" / "final" / "tokenizer.json").exists()
    assert tokenizer_of(baked / "sft" / "final", baked / "tokenizer") == baked / "tokenizer"


def test_tied_embeddings_grow_once_with_mean_rows():
    import dataclasses

    from fournil.model.llama import Llama
    from fournil.model.presets import PRESETS
    from fournil.sft.tokenizer import grow_vocabulary

    model = Llama(dataclasses.replace(PRESETS["tiny"], vocab_size=100, tie_embeddings=True))
    grown = grow_vocabulary(model, [90, 100, 101])  # 90: a padding row the tokenizer did not use; 100, 101: new rows
    assert grown.config.vocab_size == 102 and grown.lm_head.weight is grown.embed.weight
    mean = model.embed.weight[:90].mean(0)
    for i in (90, 100, 101):
        torch.testing.assert_close(grown.embed.weight[i], mean)
    torch.testing.assert_close(grown.embed.weight[:90], model.embed.weight[:90])
    torch.testing.assert_close(grown.embed.weight[91:100], model.embed.weight[91:100])


@pytest.mark.parametrize("damage", ["unreadable", "too_many_tokens"])
def test_a_bad_tokenizer_in_init_from_is_a_one_line_error(baked, llama, tmp_path, damage):
    folder = tmp_path / "model"
    shutil.copytree(llama, folder)
    if damage == "unreadable":
        (folder / "tokenizer.json").write_text('{"model": ', encoding="utf-8")
        expected = "tokenizer.json is not a readable tokenizer.json"
    else:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "vocab_size": 300}))
        expected = "has 400 tokens but the model in .* only 300 embeddings"
    run_dir = copy_run(baked, tmp_path, ("tokenizer", "train"))
    with pytest.raises(FournilError, match=expected) as error:
        run_stage(load_recipe(MINI, [f"sft.init_from={folder}"]), run_dir, "sft", log=lambda message: None)
    assert "\n" not in str(error.value)
