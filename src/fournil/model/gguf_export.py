"""GGUF export for llama.cpp: the `llama` or `bloom` architecture, weights, the byte-level BPE
vocabulary and the chat template.

llama.cpp's Llama applies RoPE to interleaved pairs where fournil and Hugging Face rotate halves,
so the query and key rows are permuted exactly as llama.cpp's own convert_hf_to_gguf.py does.
llama.cpp's BLOOM reads q, k and v as one matrix, their rows one after the other (ALiBi with
BLOOM's slopes is built in), and its output head is the embedding when the file has none.
llama.cpp splits text before BPE with a pre-tokenizer it knows by name (`tokenizer.ggml.pre`); a
tokenizer whose splitting is not one of those is refused, since llama.cpp would encode text
differently from training without a word of warning.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from fournil.atomic import replacing
from fournil.errors import FournilError

try:
    import gguf
except ModuleNotFoundError:
    raise FournilError("GGUF export needs the gguf package: pip install 'fournil[gguf]'") from None
from fournil.model.hf import export_architecture, special_tokens
from fournil.model.io import find_tokenizer, load_model, state_tensors
from fournil.tokenizer.train import LLAMA_CPP

Q = gguf.GGMLQuantizationType
# outtype → (file type, matrices, embedding and output head); norms stay f32. Q4_0's head is Q8_0:
# llama.cpp's llama-quantize raises it to Q6_K, a type gguf's Python helpers cannot write.
OUT_TYPES = {
    "f32": (gguf.LlamaFileType.ALL_F32, Q.F32, Q.F32),
    "f16": (gguf.LlamaFileType.MOSTLY_F16, Q.F16, Q.F16),
    "q8_0": (gguf.LlamaFileType.MOSTLY_Q8_0, Q.Q8_0, Q.Q8_0),
    "q4_0": (gguf.LlamaFileType.MOSTLY_Q4_0, Q.Q4_0, Q.Q8_0),
}


def file_name(model_name: str, outtype: str) -> str:
    """`<model>-<TYPE>.gguf`, as llama.cpp's own releases name them (tiny-F16.gguf, tiny-Q4_0.gguf)."""
    return f"{model_name}-{outtype.upper()}.gguf"


def gguf_name(name: str) -> str:
    """fournil tensor name → llama.cpp tensor name."""
    parts = name.split(".")
    if parts[0] == "layers":
        inner = {"attn_norm": "attn_norm", "ffn_norm": "ffn_norm", "attn.wq": "attn_q", "attn.wk": "attn_k", "attn.wv": "attn_v",
                 "attn.wo": "attn_output", "ffn.w1": "ffn_gate", "ffn.w3": "ffn_up", "ffn.w2": "ffn_down"}[".".join(parts[2:-1])]
        return f"blk.{parts[1]}.{inner}.weight"
    return {"embed.weight": "token_embd.weight", "norm.weight": "output_norm.weight", "lm_head.weight": "output.weight"}[name]


def bloom_gguf_name(name: str) -> str:
    """fournil tensor name of a BLOOM model (q, k and v already fused as `attn.wqkv`) → llama.cpp tensor name."""
    *parts, suffix = name.split(".")
    if parts[0] == "layers":
        inner = {"attn_norm": "attn_norm", "ffn_norm": "ffn_norm", "attn.wqkv": "attn_qkv", "attn.wo": "attn_output",
                 "ffn.w1": "ffn_up", "ffn.w2": "ffn_down"}[".".join(parts[2:])]
        return f"blk.{parts[1]}.{inner}.{suffix}"
    return {"embed": "token_embd", "embed_norm": "token_embd_norm", "norm": "output_norm", "lm_head": "output"}[parts[0]] + f".{suffix}"


def bloom_fused(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors with each layer's q, k and v (weights and biases) joined row after row as `attn.wqkv`."""
    out = {}
    for name, tensor in tensors.items():
        if ".attn.wq." in name:
            out[name.replace(".wq.", ".wqkv.")] = torch.cat([tensors[name.replace(".wq.", f".{w}.")] for w in ("wq", "wk", "wv")])
        elif ".attn.wk." not in name and ".attn.wv." not in name:
            out[name] = tensor
    return out


def interleave_rope_rows(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Reorder each head's rows from rotate-half (i, i + D/2) pairs to adjacent (2i, 2i + 1) pairs."""
    out, dim = weight.shape
    return weight.reshape(n_heads, 2, out // n_heads // 2, dim).transpose(1, 2).reshape(out, dim)


def vocabulary(tokenizer_path: Path, vocab_size: int) -> tuple[list[str], list[int], list[str]]:
    """Tokens (byte-level strings, by id, padded to the model's vocabulary), their types and the merges."""
    data = json.loads(tokenizer_path.read_text(encoding="utf-8"))
    if data.get("model", {}).get("type") != "BPE":
        raise FournilError(f"{tokenizer_path}: GGUF export handles byte-level BPE tokenizers; this one is {data.get('model', {}).get('type')}")
    tokens: dict[int, tuple[str, int]] = {i: (t, gguf.TokenType.NORMAL) for t, i in data["model"]["vocab"].items()}
    for added in data.get("added_tokens", []):
        tokens[added["id"]] = (added["content"], gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED)
    if max(tokens) >= vocab_size:
        raise FournilError(f"{tokenizer_path}: token id {max(tokens)} is beyond the model's {vocab_size} embeddings; give the model's tokenizer")
    for i in range(vocab_size):
        tokens.setdefault(i, (f"[PAD{i}]", gguf.TokenType.UNUSED))
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"].get("merges", [])]
    return [tokens[i][0] for i in range(vocab_size)], [int(tokens[i][1]) for i in range(vocab_size)], merges


def pre_tokenizer_name(tokenizer_path: Path) -> str:
    """llama.cpp's name for the tokenizer's pre-tokenizer; a FournilError when llama.cpp has none that
    splits as it does (or when a normaliser would change the text first, which llama.cpp never does)."""
    data = json.loads(tokenizer_path.read_text(encoding="utf-8"))
    pre, ignore_merges = data.get("pre_tokenizer") or {}, bool(data.get("model", {}).get("ignore_merges"))
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    byte_level = steps[-1].get("type") == "ByteLevel" and not steps[-1].get("add_prefix_space")
    name = None
    if data.get("normalizer") is None and byte_level and len(steps) == 1 and steps[0].get("use_regex", True):
        name = None if ignore_merges else "gpt-2"
    elif data.get("normalizer") is None and byte_level and len(steps) == 2 and not steps[1].get("use_regex", True):
        split = steps[0]
        isolated = split.get("type") == "Split" and split.get("behavior") == "Isolated" and not split.get("invert")
        known = LLAMA_CPP.get((split.get("pattern") or {}).get("Regex")) if isolated else None
        name = known.name if known and known.ignore_merges == ignore_merges else None
    if name is None:
        raise FournilError(f"{tokenizer_path}: its pre-tokenizer is not one llama.cpp implements, so llama.cpp would split text "
                           "differently from training; train the tokenizer again with this fournil (qwen35 or llama-bpe splitting), "
                           "or release the Hugging Face folder without GGUF")
    return name


def chat_template(tokenizer_dir: Path) -> str | None:
    """The tokenizer_config.json's chat template, the one transformers applies."""
    path = tokenizer_dir / "tokenizer_config.json"
    return json.loads(path.read_text(encoding="utf-8")).get("chat_template") if path.is_file() else None


def gguf_tensor(name: str, tensor: torch.Tensor, outtype: str) -> tuple[np.ndarray, gguf.GGMLQuantizationType]:
    """The tensor's data in its GGUF type: norms f32; a matrix whose rows do not fill whole blocks f16."""
    _, matrix, head = OUT_TYPES[outtype]
    qtype = Q.F32 if tensor.ndim == 1 else head if name in ("embed.weight", "lm_head.weight") else matrix
    data = tensor.float().numpy()
    if qtype not in (Q.F32, Q.F16) and data.shape[-1] % gguf.GGML_QUANT_SIZES[qtype][0]:
        qtype = Q.F16
    return gguf.quants.quantize(data, qtype), qtype


def export_gguf(hf_or_model_folder: Path, out_path: Path, tokenizer_dir: Path | None = None, outtype: str = "f16",
                name: str | None = None) -> Path:
    """Write a GGUF file that llama.cpp runs, of a Llama or a BLOOM model: weights (`outtype` f32, f16,
    q8_0 or q4_0; norms and biases stay f32), the tokenizer (vocabulary, merges, special tokens, pre-tokenizer) and its chat template. `name` is
    the model's (general.name), the folder's by default. The tokenizer is found next to the model unless given."""
    if outtype not in OUT_TYPES:
        raise FournilError(f"outtype {outtype!r}: choose one of {', '.join(OUT_TYPES)}")
    model = load_model(hf_or_model_folder)
    config = model.config
    architecture = export_architecture(config)
    tokenizer_dir = Path(tokenizer_dir) if tokenizer_dir else find_tokenizer(hf_or_model_folder)
    tokenizer_path = tokenizer_dir / "tokenizer.json"
    ids = special_tokens(tokenizer_dir)
    pre = pre_tokenizer_name(tokenizer_path)
    tokens, types, merges = vocabulary(tokenizer_path, config.vocab_size)
    probe = Tokenizer.from_file(str(tokenizer_path)).encode("a", add_special_tokens=True).ids
    template = chat_template(tokenizer_dir)

    out_path = Path(out_path)
    with replacing(out_path) as tmp:
        writer = gguf.GGUFWriter(tmp, architecture)
        writer.add_name(name or Path(hf_or_model_folder).resolve().name)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        writer.add_context_length(config.context_length)
        writer.add_embedding_length(config.dim)
        writer.add_block_count(config.n_layers)
        writer.add_feed_forward_length(config.ffn_dim)
        writer.add_head_count(config.n_heads)
        writer.add_head_count_kv(config.n_kv_heads)
        if architecture == "bloom":
            writer.add_layer_norm_eps(config.norm_eps)
        else:
            writer.add_rope_dimension_count(config.head_dim)
            writer.add_rope_freq_base(config.rope_base)
            writer.add_layer_norm_rms_eps(config.norm_eps)
        writer.add_vocab_size(config.vocab_size)
        writer.add_file_type(OUT_TYPES[outtype][0])
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(pre)
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        writer.add_token_merges(merges)
        for role, add in (("bos", writer.add_bos_token_id), ("eos", writer.add_eos_token_id), ("pad", writer.add_pad_token_id)):
            if ids[role] is not None:
                add(ids[role])
        writer.add_add_bos_token(bool(probe) and probe[0] == ids["bos"])
        writer.add_add_eos_token(bool(probe) and probe[-1] == ids["eos"])
        if template:
            writer.add_chat_template(template)

        tensors = state_tensors(model)
        for key, tensor in (bloom_fused(tensors) if architecture == "bloom" else tensors).items():
            if architecture == "llama" and key.endswith("attn.wq.weight"):
                tensor = interleave_rope_rows(tensor, config.n_heads)
            elif architecture == "llama" and key.endswith("attn.wk.weight"):
                tensor = interleave_rope_rows(tensor, config.n_kv_heads)
            data, qtype = gguf_tensor(key, tensor, outtype)
            writer.add_tensor((bloom_gguf_name if architecture == "bloom" else gguf_name)(key), data, raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return out_path
