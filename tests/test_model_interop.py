"""Hugging Face export/import parity, GGUF export, and generation (greedy equal to transformers')."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from fournil.errors import FournilError
from fournil.model.generate import Generator, Sampling, generate_tokens
from fournil.model.hf import export_hf, import_hf
from fournil.model.io import load_model, save_model
from fournil.model.llama import Llama
from fournil.model.presets import PRESETS

transformers = pytest.importorskip("transformers")

TEXTS = [
    "Le boulanger prépare le pain chaque matin avant l'aube.",
    "The baker prepares bread every morning before dawn.",
    "Les croissants sont cuits au four à 190 degrés pendant 18 minutes.",
    "Numbers like 2024 and 3.14 appear in text too; so do émojis and accents: àéîõü.",
]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    """A tiny byte-level BPE folder laid out like fournil's tokenizer stage writes it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    folder = tmp_path_factory.mktemp("tokenizer")
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(TEXTS * 20, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A", special_tokens=[(specials[0], 0)])
    tokenizer.save(str(folder / "tokenizer.json"))
    settings = {"bos_token": specials[0], "eos_token": specials[1], "pad_token": specials[2],
                "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 256}
    (folder / "tokenizer_config.json").write_text(json.dumps(settings))
    (folder / "special_tokens_map.json").write_text(json.dumps({k: v for k, v in settings.items() if k.endswith("_token")}))
    return folder


def tiny(**overrides) -> Llama:
    torch.manual_seed(0)
    model = Llama(dataclasses.replace(PRESETS["tiny"], **overrides)).eval()
    with torch.no_grad():  # norms away from 1, so a misplaced norm weight shows
        for name, p in model.named_parameters():
            if p.ndim == 1:
                p.uniform_(0.5, 1.5)
    return model


def hf_load(folder):
    return transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


def assert_same_logits(ours: Llama, theirs, x: torch.Tensor) -> None:
    """Logits within 1e-5 relative; when they differ, name the first layer whose output differs."""
    with torch.no_grad():
        mine, hf = ours(x), theirs(x, output_hidden_states=True)
    if torch.allclose(mine, hf.logits, rtol=1e-5, atol=1e-5 * hf.logits.abs().max().item()):
        return
    captured = []
    hooks = [layer.register_forward_hook(lambda m, i, o: captured.append(o)) for layer in ours.layers]
    with torch.no_grad():
        ours(x)
    for hook in hooks:
        hook.remove()
    for i, (a, b) in enumerate(zip(captured, hf.hidden_states[1:], strict=False)):
        if not torch.allclose(a, b, rtol=1e-5, atol=1e-5):
            pytest.fail(f"layer {i} differs: max abs difference {(a - b).abs().max():.3g}")
    pytest.fail(f"logits differ after the final norm/head: max abs difference {(mine - hf.logits).abs().max():.3g}")


@pytest.mark.parametrize("overrides", [{"rope_base": 500000.0}, {"tie_embeddings": True, "n_kv_heads": 4}], ids=["gqa", "tied"])
def test_export_loads_in_transformers_with_equal_logits(tmp_path, tokenizer_dir, overrides):
    model = tiny(**overrides)
    out = export_hf(model, tokenizer_dir, tmp_path / "hf")
    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                                               "special_tokens_map.json", "generation_config.json"}
    generation = json.loads((out / "generation_config.json").read_text())
    assert (generation["bos_token_id"], generation["eos_token_id"], generation["pad_token_id"]) == (0, 1, 2)
    theirs = hf_load(out)
    assert sum(p.numel() for p in theirs.parameters()) == model.num_params()
    assert_same_logits(model, theirs, torch.randint(0, 512, (2, 37)))
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    assert tokenizer.eos_token_id == 1 and tokenizer("bonjour")["input_ids"][0] == 0


def test_import_from_transformers_with_equal_logits(tmp_path):
    config = transformers.LlamaConfig(vocab_size=300, hidden_size=96, intermediate_size=200, num_hidden_layers=3,
                                      num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=128,
                                      rms_norm_eps=1e-6, rope_theta=20000.0, tie_word_embeddings=False)
    torch.manual_seed(1)
    theirs = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    theirs.save_pretrained(tmp_path / "hf")
    ours = import_hf(tmp_path / "hf")
    assert (ours.config.n_kv_heads, ours.config.rope_base, ours.config.norm_eps) == (2, 20000.0, 1e-6)
    assert_same_logits(ours, theirs, torch.randint(0, 300, (2, 50)))
    # and through load_model, which recognises an export; then fournil → fournil folder → same model
    save_model(load_model(tmp_path / "hf"), tmp_path / "fournil")
    assert_same_logits(load_model(tmp_path / "fournil"), theirs, torch.randint(0, 300, (1, 20)))


BLOOM = {"alibi": True, "embedding_norm": True, "layer_norm": True, "gelu_mlp": True, "bias": True, "tie_embeddings": True}


@pytest.mark.parametrize("shape", [{"n_kv_heads": 4, "ffn_dim": 256}, {"dim": 96, "n_heads": 6, "n_kv_heads": 6, "ffn_dim": 384}],
                         ids=["4-heads", "6-heads"])  # 6: ALiBi's slopes for a head count that is not a power of 2
def test_bloom_export_loads_in_transformers_with_equal_logits(tmp_path, tokenizer_dir, shape):
    model = tiny(**BLOOM, **shape)  # biases and norm weights drawn away from 0 and 1 by tiny()
    out = export_hf(model, tokenizer_dir, tmp_path / "hf")
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["BloomForCausalLM"] and config["n_head"] == shape.get("n_heads", 4)
    theirs = hf_load(out)
    assert type(theirs).__name__ == "BloomForCausalLM"
    assert sum(p.numel() for p in theirs.parameters()) == model.num_params()
    x = torch.randint(0, 512, (2, 41))
    assert_same_logits(model, theirs, x)
    back = load_model(out)  # and back: fournil reads its own BLOOM release (generate, chat, evaluate, gguf)
    assert back.config == model.config
    with torch.no_grad():
        assert torch.equal(back(x), model(x))


def test_import_from_transformers_bloom_with_equal_logits(tmp_path):
    config = transformers.BloomConfig(vocab_size=300, hidden_size=96, n_layer=3, n_head=6, layer_norm_epsilon=1e-6)
    torch.manual_seed(2)
    theirs = transformers.BloomForCausalLM(config).eval()
    with torch.no_grad():  # biases and norms away from 0 and 1, so a misplaced one shows
        for name, p in theirs.named_parameters():
            if p.ndim == 1:
                p.uniform_(0.5, 1.5)
    theirs.save_pretrained(tmp_path / "hf")
    ours = import_hf(tmp_path / "hf")
    assert (ours.config.alibi, ours.config.n_heads, ours.config.ffn_dim, ours.config.norm_eps) == (True, 6, 384, 1e-6)
    x = torch.randint(0, 300, (2, 50))
    assert_same_logits(ours, theirs, x)
    # BigScience's own files name the tensors without the `transformer.` prefix
    from safetensors.torch import load_file, save_file

    tensors = load_file(tmp_path / "hf" / "model.safetensors")
    save_file({k.removeprefix("transformer."): v for k, v in tensors.items()}, tmp_path / "hf" / "model.safetensors")
    assert_same_logits(import_hf(tmp_path / "hf"), theirs, x)
    (tmp_path / "hf" / "config.json").write_text(json.dumps({**config.to_dict(), "apply_residual_connection_post_layernorm": True}))
    with pytest.raises(FournilError, match="apply_residual_connection_post_layernorm"):
        import_hf(tmp_path / "hf")


def test_models_mixing_llama_and_bloom_are_not_exportable(tmp_path, tokenizer_dir):
    with pytest.raises(FournilError, match=r"mixes Llama and BLOOM \(layer_norm, gelu_mlp, bias off; grouped-query attention"):
        export_hf(tiny(alibi=True, embedding_norm=True), tokenizer_dir, tmp_path / "hf")
    with pytest.raises(FournilError, match="qk_norm, which Llama .* not Llama-exportable"):
        export_hf(tiny(qk_norm=True), tokenizer_dir, tmp_path / "hf")


@pytest.mark.parametrize("penalty", [1.0, 1.3])
def test_greedy_generation_equals_transformers(tmp_path, tokenizer_dir, penalty):
    model = tiny()
    theirs = hf_load(export_hf(model, tokenizer_dir, tmp_path / "hf"))
    prompt = [0, 17, 250, 33, 101, 7]
    ours = list(generate_tokens(model, prompt, Sampling(max_new_tokens=40, repetition_penalty=penalty)))
    expected = theirs.generate(torch.tensor([prompt]), max_new_tokens=40, do_sample=False, repetition_penalty=penalty,
                               eos_token_id=None, pad_token_id=2)[0, len(prompt):].tolist()
    assert ours == expected and len(set(ours)) > 3


def test_generation_stops_at_eos_stop_strings_and_streams(tmp_path, tokenizer_dir):
    model = tiny()
    save_model(model, tmp_path / "run" / "train" / "final")
    (tmp_path / "run" / "tokenizer").symlink_to(tokenizer_dir)  # the run folder layout: tokenizer found from train/final
    generator = Generator(tmp_path / "run" / "train" / "final", device="cpu")
    greedy = Sampling(max_new_tokens=30)
    pieces = list(generator.stream("Le boulanger", greedy))
    text = "".join(pieces)
    ids = list(generate_tokens(model, generator.tokenizer.encode("Le boulanger").ids, greedy, generator.eos_ids))
    assert text == generator.tokenizer.decode([i for i in ids if i not in generator.eos_ids]) and len(pieces) > 1
    stop = text[len(text) // 2:len(text) // 2 + 2]
    cut = "".join(generator.stream("Le boulanger", Sampling(max_new_tokens=30, stop=(stop,))))
    assert cut == text[:text.find(stop)]
    # an EOS id ends generation right after it is produced
    first, second = list(generate_tokens(model, [0, 5, 6], Sampling(max_new_tokens=2)))
    assert list(generate_tokens(model, [0, 5, 6], greedy, frozenset({second}))) == [first, second]


def test_sampling_options(tokenizer_dir):
    model = tiny()
    prompt = [0, 40, 41]
    greedy = list(generate_tokens(model, prompt, Sampling(max_new_tokens=12)))
    assert list(generate_tokens(model, prompt, Sampling(max_new_tokens=12, temperature=1.0, top_k=1, seed=3))) == greedy
    assert list(generate_tokens(model, prompt, Sampling(max_new_tokens=12, temperature=1.0, top_p=1e-6, seed=3))) == greedy
    hot = Sampling(max_new_tokens=12, temperature=2.0, seed=5)
    first = list(generate_tokens(model, prompt, hot))
    assert first == list(generate_tokens(model, prompt, hot)) and first != greedy
    with pytest.raises(FournilError, match="top_p = 0: must be in"):
        Sampling(top_p=0)
    with pytest.raises(FournilError, match="the prompt has 300 tokens; the model reads at most 256"):
        list(generate_tokens(model, [5] * 300, Sampling()))


def test_generate_command_on_an_export(tmp_path, tokenizer_dir):
    from typer.testing import CliRunner

    from fournil.cli import app

    export_hf(tiny(), tokenizer_dir, tmp_path / "hf")
    result = CliRunner().invoke(app, ["generate", str(tmp_path / "hf"), "--prompt", "Le pain", "--max-new-tokens", "8", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Le pain") and len(result.output) > len("Le pain\n")


def test_gguf_export_reads_back(tmp_path, tokenizer_dir):
    from gguf import GGUFReader

    from fournil.model.gguf_export import export_gguf

    model = tiny()
    out = export_gguf(export_hf(model, tokenizer_dir, tmp_path / "hf"), tmp_path / "model.gguf", outtype="f32")
    reader = GGUFReader(out)
    tensors = {t.name: t for t in reader.tensors}
    assert len(tensors) == 2 + 9 * 2 + 1
    assert list(tensors["token_embd.weight"].shape) == [64, 512]  # GGUF lists dimensions innermost first
    assert list(tensors["blk.1.attn_k.weight"].shape) == [64, 32]
    assert list(tensors["blk.0.ffn_down.weight"].shape) == [176, 64]
    np.testing.assert_array_equal(tensors["blk.0.ffn_gate.weight"].data, model.layers[0].ffn.w1.weight.detach().numpy())
    # queries: the rows of each head re-ordered for llama.cpp's interleaved RoPE, nothing else changed
    q = model.layers[0].attn.wq.weight.detach().numpy()
    stored = tensors["blk.0.attn_q.weight"].data
    assert not np.array_equal(stored, q)
    np.testing.assert_array_equal(stored.reshape(4, 8, 2, 64)[:, :, 0], q.reshape(4, 2, 8, 64)[:, 0])

    def field(name):
        f = reader.fields[name]
        return [bytes(f.parts[i]).decode() if f.types[-1].name == "STRING" else f.parts[i][0].item() for i in f.data]

    from tokenizers import Tokenizer

    vocab = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json")).get_vocab()
    tokens = field("tokenizer.ggml.tokens")
    assert len(tokens) == 512 and all(tokens[i] == t for t, i in vocab.items()) and tokens[511] == "[PAD511]"
    assert field("general.architecture") == ["llama"] and field("llama.attention.head_count_kv") == [2]
    assert field("tokenizer.ggml.eos_token_id") == [1] and field("tokenizer.ggml.add_bos_token") == [True]
    assert field("tokenizer.ggml.merges")


def test_gguf_export_of_a_bloom_model_reads_back(tmp_path, tokenizer_dir):
    from gguf import GGUFReader

    from fournil.model.gguf_export import export_gguf

    model = tiny(**BLOOM, n_kv_heads=4, ffn_dim=256)
    reader = GGUFReader(export_gguf(export_hf(model, tokenizer_dir, tmp_path / "hf"), tmp_path / "bloom.gguf", outtype="f32"))
    tensors = {t.name: t for t in reader.tensors}
    per_layer = {f"{name}.{suffix}" for name in ("attn_norm", "attn_qkv", "attn_output", "ffn_norm", "ffn_up", "ffn_down")
                 for suffix in ("weight", "bias")}
    assert set(tensors) == {"token_embd.weight", "token_embd_norm.weight", "token_embd_norm.bias", "output_norm.weight",
                            "output_norm.bias"} | {f"blk.{i}.{name}" for i in (0, 1) for name in per_layer}  # tied: no output.weight
    attn = model.layers[1].attn
    for suffix in ("weight", "bias"):  # q, k, v rows one after the other, unpermuted (ALiBi, no RoPE)
        fused = torch.cat([getattr(attn, w).get_parameter(suffix) for w in ("wq", "wk", "wv")]).detach().numpy()
        np.testing.assert_array_equal(tensors[f"blk.1.attn_qkv.{suffix}"].data.reshape(fused.shape), fused)
    np.testing.assert_array_equal(tensors["blk.0.ffn_up.bias"].data, model.layers[0].ffn.w1.bias.detach().numpy())
    np.testing.assert_array_equal(tensors["token_embd_norm.bias"].data, model.embed_norm.bias.detach().numpy())
    assert list(tensors["blk.0.ffn_down.weight"].shape) == [256, 64]
    assert gguf_field(reader, "general.architecture") == "bloom" and gguf_field(reader, "bloom.feed_forward_length") == 256
    assert gguf_field(reader, "bloom.attention.layer_norm_epsilon") == pytest.approx(1e-5)
    assert not [key for key in reader.fields if "rope" in key]


@pytest.fixture(scope="module")
def fournil_tokenizers(tmp_path_factory):
    """fournil's own tokenizer folders (tokenizer stage's trainer and writer), with each of llama.cpp's pre-tokenizers."""
    from fournil.tokenizer.config import TokenizerConfig
    from fournil.tokenizer.save import save
    from fournil.tokenizer.train import train_tokenizer

    folders = {}
    for pre in ("qwen35", "llama-bpe"):
        folders[pre] = tmp_path_factory.mktemp("fournil-tokenizer")
        save(train_tokenizer(TEXTS * 20, TokenizerConfig(vocab_size=512, pre_tokenizer=pre)), folders[pre])
    return folders


def gguf_field(reader, name):
    f = reader.fields[name]
    values = [bytes(f.parts[i]).decode() if f.types[-1].name == "STRING" else f.parts[i][0].item() for i in f.data]
    return values[0] if len(values) == 1 else values


def test_gguf_carries_the_chat_template_name_and_llama_cpp_pre_tokenizer(tmp_path, fournil_tokenizers):
    from gguf import GGUFReader

    from fournil.model.gguf_export import export_gguf
    from fournil.tokenizer.save import CHAT_TEMPLATE

    for pre in ("qwen35", "llama-bpe"):
        folder = fournil_tokenizers[pre]
        out = export_gguf(export_hf(tiny(), folder, tmp_path / pre), tmp_path / f"{pre}.gguf", outtype="f32", name="Pain-1")
        reader = GGUFReader(out)
        template = json.loads((folder / "tokenizer_config.json").read_text())["chat_template"]
        assert gguf_field(reader, "tokenizer.chat_template") == template == CHAT_TEMPLATE
        assert gguf_field(reader, "tokenizer.ggml.pre") == pre
        assert gguf_field(reader, "general.name") == "Pain-1" and gguf_field(reader, "general.quantization_version") == 2


def test_gguf_quantized_types_are_close_to_the_weights(tmp_path, tokenizer_dir):
    from gguf import GGUFReader
    from gguf.quants import dequantize

    from fournil.model.gguf_export import export_gguf

    model = tiny()
    hf = export_hf(model, tokenizer_dir, tmp_path / "hf")
    gate = model.layers[0].ffn.w1.weight.detach().numpy()
    errors = {}
    for outtype, file_type, gate_type in (("q8_0", 7, "Q8_0"), ("q4_0", 2, "Q4_0")):
        reader = GGUFReader(export_gguf(hf, tmp_path / f"{outtype}.gguf", outtype=outtype))
        tensors = {t.name: t for t in reader.tensors}
        assert gguf_field(reader, "general.file_type") == file_type
        assert tensors["blk.0.ffn_gate.weight"].tensor_type.name == gate_type
        assert tensors["token_embd.weight"].tensor_type.name == "Q8_0"  # the (tied) output head keeps 8 bits
        assert tensors["blk.0.ffn_down.weight"].tensor_type.name == "F16"  # rows of 176 fill no whole block of 32
        assert tensors["blk.0.attn_norm.weight"].tensor_type.name == "F32"
        stored = dequantize(tensors["blk.0.ffn_gate.weight"].data, tensors["blk.0.ffn_gate.weight"].tensor_type)
        errors[outtype] = np.abs(stored - gate).max() / np.abs(gate).max()
    assert errors["q8_0"] < 0.01 < errors["q4_0"] < 0.15


@pytest.mark.parametrize("change", ["digit after a space", "normaliser", "ignore merges"])
def test_gguf_export_refuses_a_tokenizer_llama_cpp_would_split_differently(tmp_path, fournil_tokenizers, change):
    from fournil.model.gguf_export import pre_tokenizer_name

    data = json.loads((fournil_tokenizers["qwen35"] / "tokenizer.json").read_text())
    assert pre_tokenizer_name(fournil_tokenizers["qwen35"] / "tokenizer.json") == "qwen35"
    if change == "digit after a space":  # as fournil's tokenizers before llama.cpp's pre-tokenizers
        pattern = data["pre_tokenizer"]["pretokenizers"][0]["pattern"]
        pattern["Regex"] = pattern["Regex"].replace(r"|\p{N}|", r"| ?\p{N}|")
    elif change == "normaliser":
        data["normalizer"] = {"type": "NFC"}
    else:
        data["model"]["ignore_merges"] = True
    (tmp_path / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(FournilError, match="not one llama.cpp implements"):
        pre_tokenizer_name(tmp_path / "tokenizer.json")


def test_chat_command_takes_turns(tmp_path, tokenizer_dir):
    from typer.testing import CliRunner

    from fournil.cli import app

    export_hf(tiny(), tokenizer_dir, tmp_path / "hf")
    result = CliRunner().invoke(app, ["chat", str(tmp_path / "hf"), "--max-new-tokens", "6", "--seed", "1", "--device", "cpu"],
                                input="Bonjour\nÇa va ?\n\n")
    assert result.exit_code == 0, result.output
    assert result.output.count("> ") == 3  # two turns answered, then the empty line ends the chat
