"""Hugging Face interop: a fournil model ⇄ a `LlamaForCausalLM` folder that transformers, lm-eval,
vLLM and llama.cpp's converter load as is; a BLOOM-shaped model ⇄ a `BloomForCausalLM` folder.

Only the tensor names differ (fournil's layout is Llama's, rotate-half RoPE included; BLOOM fuses
q, k and v per head), so both directions are renamings of safetensors; transformers is not needed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from fournil.atomic import replacing, write_text
from fournil.errors import FournilError
from fournil.model.io import empty_model, load_model, read_config, read_tensors, state_tensors
from fournil.model.llama import Llama, LlamaConfig
from fournil.tokenizer import IM_END

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
SPECIAL_DEFAULTS = {"bos": "<|begin_of_text|>", "eos": "<|end_of_text|>", "pad": "<|pad|>"}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def hf_name(name: str) -> str:
    """fournil tensor name → Hugging Face Llama tensor name."""
    parts = name.split(".")
    if parts[0] == "layers":
        inner = {
            "attn_norm.weight": "input_layernorm.weight",
            "ffn_norm.weight": "post_attention_layernorm.weight",
            "attn.wq.weight": "self_attn.q_proj.weight",
            "attn.wk.weight": "self_attn.k_proj.weight",
            "attn.wv.weight": "self_attn.v_proj.weight",
            "attn.wo.weight": "self_attn.o_proj.weight",
            "ffn.w1.weight": "mlp.gate_proj.weight",
            "ffn.w3.weight": "mlp.up_proj.weight",
            "ffn.w2.weight": "mlp.down_proj.weight",
        }[".".join(parts[2:])]
        return f"model.layers.{parts[1]}.{inner}"
    return {"embed.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight", "lm_head.weight": "lm_head.weight"}[name]


BLOOM_SWITCHES = ("alibi", "embedding_norm", "layer_norm", "gelu_mlp", "bias")


def check_exportable(config: LlamaConfig) -> None:
    """Raise unless the model is a Llama (none of the BLOOM switches nor QK-norm)."""
    extras = [name for name in (*BLOOM_SWITCHES, "qk_norm") if getattr(config, name)]
    if extras:
        raise FournilError(f"this model uses {', '.join(extras)}, which Llama (transformers, llama.cpp) does not have: "
                           "it is not Llama-exportable")


def export_architecture(config: LlamaConfig) -> str:
    """'llama' or 'bloom': the transformers architecture this model is exactly; else a FournilError saying why none."""
    if not any(getattr(config, name) for name in BLOOM_SWITCHES):
        check_exportable(config)
        return "llama"
    missing = [name for name in BLOOM_SWITCHES if not getattr(config, name)]
    other = [why for why, bad in (("qk_norm", config.qk_norm), ("grouped-query attention", config.n_kv_heads != config.n_heads),
                                  (f"ffn_dim {config.ffn_dim} ≠ 4 × dim", config.ffn_dim != 4 * config.dim),
                                  ("untied embeddings", not config.tie_embeddings)) if bad]
    if missing or other:
        raise FournilError(f"this model mixes Llama and BLOOM ({', '.join(missing) + ' off' if missing else ''}"
                           f"{'; ' if missing and other else ''}{', '.join(other)}), so neither LlamaForCausalLM nor "
                           "BloomForCausalLM computes it")
    return "bloom"


def bloom_tensors(model: Llama) -> dict[str, torch.Tensor]:
    """fournil's tensors under BloomForCausalLM's names; q, k and v fused per head as BLOOM keeps them."""
    c, tensors = model.config, {}
    state = {name: t.detach() for name, t in model.state_dict().items()}
    tensors["transformer.word_embeddings.weight"] = state["embed.weight"]
    for suffix in ("weight", "bias"):
        tensors[f"transformer.word_embeddings_layernorm.{suffix}"] = state[f"embed_norm.{suffix}"]
        tensors[f"transformer.ln_f.{suffix}"] = state[f"norm.{suffix}"]
        for i in range(c.n_layers):
            ours, theirs = f"layers.{i}.", f"transformer.h.{i}."
            parts = [state[f"{ours}attn.{w}.{suffix}"].reshape(c.n_heads, c.head_dim, -1) for w in ("wq", "wk", "wv")]
            tensors[theirs + f"self_attention.query_key_value.{suffix}"] = torch.stack(parts, dim=1).reshape(3 * c.dim, -1).squeeze(-1)
            for mine, hf in BLOOM_NAMES:
                tensors[f"{theirs}{hf}.{suffix}"] = state[f"{ours}{mine}.{suffix}"]
    return {name: t.contiguous() for name, t in tensors.items()}


BLOOM_NAMES = (("attn_norm", "input_layernorm"), ("ffn_norm", "post_attention_layernorm"), ("attn.wo", "self_attention.dense"),
               ("ffn.w1", "mlp.dense_h_to_4h"), ("ffn.w2", "mlp.dense_4h_to_h"))


def bloom_state(tensors: dict[str, torch.Tensor], c: LlamaConfig) -> dict[str, torch.Tensor]:
    """BloomForCausalLM's tensors (names as `bloom_tensors` writes them) → fournil's state dict: the inverse."""
    state = {"embed.weight": tensors["transformer.word_embeddings.weight"]}
    for suffix in ("weight", "bias"):
        state[f"embed_norm.{suffix}"] = tensors[f"transformer.word_embeddings_layernorm.{suffix}"]
        state[f"norm.{suffix}"] = tensors[f"transformer.ln_f.{suffix}"]
        for i in range(c.n_layers):
            ours, theirs = f"layers.{i}.", f"transformer.h.{i}."
            fused = tensors[theirs + f"self_attention.query_key_value.{suffix}"].reshape(c.n_heads, 3, c.head_dim, -1)
            for j, w in enumerate(("wq", "wk", "wv")):
                state[f"{ours}attn.{w}.{suffix}"] = fused[:, j].reshape(c.dim, -1).squeeze(-1).contiguous()
            for mine, hf in BLOOM_NAMES:
                state[f"{ours}{mine}.{suffix}"] = tensors[f"{theirs}{hf}.{suffix}"]
    if "lm_head.weight" in tensors:
        state["lm_head.weight"] = tensors["lm_head.weight"]
    return state


def bloom_config(config: LlamaConfig, tokens: dict[str, int | None], dtype: torch.dtype) -> dict:
    return {
        "architectures": ["BloomForCausalLM"], "model_type": "bloom", "vocab_size": config.vocab_size,
        "hidden_size": config.dim, "n_layer": config.n_layers, "n_head": config.n_heads,
        "layer_norm_epsilon": config.norm_eps, "initializer_range": config.init_std,
        "apply_residual_connection_post_layernorm": False, "hidden_dropout": 0.0, "attention_dropout": 0.0,
        "pretraining_tp": 1, "slow_but_exact": False, "tie_word_embeddings": True, "seq_length": config.context_length,
        "bos_token_id": tokens["bos"], "eos_token_id": tokens["eos"], "pad_token_id": tokens["pad"],
        "torch_dtype": str(dtype).removeprefix("torch."), "use_cache": True,
    }


def special_tokens(tokenizer_dir: Path) -> dict[str, int | None]:
    """BOS, EOS and PAD ids of a tokenizer folder, from tokenizer_config.json (fournil's names by default),
    and the id of the end-of-turn token `<|im_end|>` (fournil.tokenizer.chat) when it has one."""
    from tokenizers import Tokenizer

    tokenizer_dir = Path(tokenizer_dir)
    if not (tokenizer_dir / "tokenizer.json").is_file():
        raise FournilError(f"{tokenizer_dir}: no tokenizer.json; give the tokenizer folder (runs/<name>/tokenizer)")
    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    settings_path = tokenizer_dir / "tokenizer_config.json"
    settings = json.loads(settings_path.read_text(encoding="utf-8")) if settings_path.is_file() else {}
    ids = {}
    for role, default in SPECIAL_DEFAULTS.items():
        token = settings.get(f"{role}_token") or default
        token = token.get("content") if isinstance(token, dict) else token
        ids[role] = tokenizer.token_to_id(token)
    ids["end_of_turn"] = tokenizer.token_to_id(IM_END)  # None in a tokenizer without ChatML's tokens
    ids["vocab_size"] = tokenizer.get_vocab_size(with_added_tokens=True)
    return ids


def hf_config(config: LlamaConfig, tokens: dict[str, int | None], dtype: torch.dtype) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": config.vocab_size,
        "hidden_size": config.dim,
        "intermediate_size": config.ffn_dim,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.n_kv_heads,
        "head_dim": config.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": config.context_length,
        "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_base,  # read by vLLM, llama.cpp and transformers < 5
        "rope_parameters": {"rope_type": "default", "rope_theta": config.rope_base},  # transformers ≥ 5
        "rope_scaling": None,
        "tie_word_embeddings": config.tie_embeddings,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "initializer_range": config.init_std,
        "bos_token_id": tokens["bos"],
        "eos_token_id": tokens["eos"],
        "pad_token_id": tokens["pad"],
        "torch_dtype": str(dtype).removeprefix("torch."),
        "use_cache": True,
    }


def export_hf(model_folder_or_model: Path | Llama, tokenizer_dir: Path, out_dir: Path, dtype: str | None = None) -> Path:
    """Write a `LlamaForCausalLM` folder (a `BloomForCausalLM` one for a BLOOM model): config.json,
    model.safetensors, the tokenizer files and generation_config.json. `dtype` (float32, bfloat16,
    float16) defaults to the model's."""
    model = model_folder_or_model if isinstance(model_folder_or_model, Llama) else load_model(model_folder_or_model)
    architecture = export_architecture(model.config)
    tokens = special_tokens(tokenizer_dir)
    if tokens["vocab_size"] > model.config.vocab_size:
        raise FournilError(f"{tokenizer_dir}: the tokenizer has {tokens['vocab_size']} tokens but the model only "
                           f"{model.config.vocab_size} embeddings; give the tokenizer the model was trained with")
    if dtype is not None and dtype not in DTYPES:
        raise FournilError(f"dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = DTYPES[dtype] if dtype else model.embed.weight.dtype
    if architecture == "bloom":
        tensors = {name: t.to(target) for name, t in bloom_tensors(model).items()}
    else:
        tensors = {hf_name(name): t.to(target) for name, t in state_tensors(model).items()}
    with replacing(out_dir / "model.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    for name in TOKENIZER_FILES:
        if (Path(tokenizer_dir) / name).is_file():
            with replacing(out_dir / name) as tmp:
                shutil.copyfile(Path(tokenizer_dir) / name, tmp)
    stops = [tokens["eos"]] + ([tokens["end_of_turn"]] if tokens["end_of_turn"] is not None else [])  # a chat turn ends at <|im_end|>
    generation = {"bos_token_id": tokens["bos"], "eos_token_id": stops if len(stops) > 1 else stops[0], "pad_token_id": tokens["pad"]}
    for name, data in (("generation_config.json", generation), ("config.json", (bloom_config if architecture == "bloom" else hf_config)(model.config, tokens, target))):
        write_text(out_dir / name, json.dumps(data, indent=2) + "\n")
    return out_dir


def llama_config_from_hf(data: dict, where: Path) -> LlamaConfig:
    """The LlamaConfig of a Hugging Face Llama config.json; anything fournil's Llama lacks is an error."""
    if data.get("model_type") != "llama":
        raise FournilError(f"{where}: model_type {data.get('model_type')!r}; fournil imports Llama and BLOOM models only")
    rope = data.get("rope_parameters") or data.get("rope_scaling") or {}
    unsupported = {
        "hidden_act": data.get("hidden_act", "silu") != "silu",
        "attention_bias": bool(data.get("attention_bias")),
        "mlp_bias": bool(data.get("mlp_bias")),
        "rope scaling": rope.get("rope_type", rope.get("type", "default")) != "default",
        "head_dim": data.get("head_dim", data["hidden_size"] // data["num_attention_heads"]) * data["num_attention_heads"] != data["hidden_size"],
    }
    found = [name for name, bad in unsupported.items() if bad]
    if found:
        raise FournilError(f"{where}: this Llama uses {', '.join(found)}, which fournil's Llama does not implement")
    return LlamaConfig(
        vocab_size=data["vocab_size"], dim=data["hidden_size"], n_layers=data["num_hidden_layers"],
        n_heads=data["num_attention_heads"], n_kv_heads=data.get("num_key_value_heads") or data["num_attention_heads"],
        ffn_dim=data["intermediate_size"], context_length=data["max_position_embeddings"],
        rope_base=float(rope.get("rope_theta", data.get("rope_theta", 10000.0))), norm_eps=data.get("rms_norm_eps", 1e-6),
        tie_embeddings=bool(data.get("tie_word_embeddings", False)), init_std=data.get("initializer_range", 0.02),
    )


def bloom_config_from_hf(data: dict, where: Path) -> LlamaConfig:
    """The LlamaConfig (BLOOM's switches on) of a Hugging Face BLOOM config.json; what fournil lacks is an error."""
    dim = data.get("hidden_size") or data["n_embed"]  # BLOOM's early configs say n_embed
    if data.get("apply_residual_connection_post_layernorm"):
        raise FournilError(f"{where}: this BLOOM adds the residual after its LayerNorm "
                           "(apply_residual_connection_post_layernorm), which fournil's blocks do not implement")
    return LlamaConfig(
        vocab_size=data["vocab_size"], dim=dim, n_layers=data["n_layer"], n_heads=data["n_head"], n_kv_heads=data["n_head"],
        ffn_dim=4 * dim, context_length=data.get("seq_length") or 2048,  # ALiBi has no position limit; BLOOM trained at 2048
        norm_eps=data.get("layer_norm_epsilon", 1e-5), tie_embeddings=bool(data.get("tie_word_embeddings", True)),
        init_std=data.get("initializer_range", 0.02), alibi=True, embedding_norm=True, layer_norm=True, gelu_mlp=True, bias=True,
    )


def config_from_hf(data: dict, where: Path) -> LlamaConfig:
    """The LlamaConfig of a Hugging Face Llama or BLOOM config.json."""
    return (bloom_config_from_hf if data.get("model_type") == "bloom" else llama_config_from_hf)(data, where)


def tensor_names(path: Path) -> list[str]:
    """The names of the tensors in a safetensors file; a missing or unreadable one is a FournilError."""
    if not path.is_file():
        raise FournilError(f"{path}: missing; a model folder needs its weights")
    try:
        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())
    except SafetensorError as error:
        raise FournilError(f"{path}: not a readable safetensors file ({error}); it is corrupt or truncated") from None


def import_hf(folder: Path, device: str | torch.device = "cpu") -> Llama:
    """A fournil Llama from a Hugging Face `LlamaForCausalLM` or `BloomForCausalLM` folder (one model.safetensors or shards)."""
    folder = Path(folder)
    data = read_config(folder)
    bloom = data.get("model_type") == "bloom"
    model = empty_model(config_from_hf(data, folder / "config.json"), device)
    tied = "lm_head.weight" if model.config.tie_embeddings else None
    ours = {name: t for name, t in model.state_dict().items() if name != tied}
    if bloom:
        with torch.device("meta"):  # names and shapes only: no memory spent on a second model
            wanted = {name: (t.shape, t.dtype) for name, t in bloom_tensors(Llama(model.config)).items()}
        if not tied:
            wanted["lm_head.weight"] = (model.lm_head.weight.shape, model.lm_head.weight.dtype)
    else:
        wanted = {hf_name(name): (t.shape, t.dtype) for name, t in ours.items()}
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        files = sorted(set(weight_map.values()))
    else:
        files = ["model.safetensors"]
        weight_map = dict.fromkeys(tensor_names(folder / files[0]), files[0])
    if bloom and "word_embeddings.weight" in weight_map:  # BigScience's own files name BloomModel's tensors, unprefixed
        weight_map = {name if name.startswith("lm_head.") else f"transformer.{name}": file for name, file in weight_map.items()}
        stored = {name: name if name.startswith("lm_head.") else name.removeprefix("transformer.") for name in wanted}
    else:
        stored = {name: name for name in wanted}
    missing = sorted(set(wanted) - set(weight_map))
    if missing:
        raise FournilError(f"{index if index.is_file() else folder / files[0]}: tensor {missing[0]} is missing ({len(missing)} missing)")
    tensors = {}
    for file in files:
        names = [n for n in wanted if weight_map[n] == file]
        expected = {stored[n]: wanted[n] for n in names}
        extra = frozenset({"lm_head.weight"} if tied else ())  # some tied exports store the head anyway
        read = read_tensors(folder / file, expected, device, extra)
        tensors.update({n: read[stored[n]] for n in names})
    state = bloom_state(tensors, model.config) if bloom else {name: tensors[hf_name(name)] for name in ours}
    model.load_state_dict(state, strict=tied is None)
    return model.eval()
